"""The one group vocabulary: every accepted name, canonical names, parameters, errors, and the
strings stored in the shipped recipes and checkpoints."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import yaml

from geozoo.groups import (
    GROUP_NAMES,
    PD,
    SL,
    SO,
    Cyclic,
    Dihedral,
    Embedded,
    GLPlus,
    MatrixGroup,
    Orthogonal,
    Permutations,
    RotationScaling,
    Scaling,
    Trivial,
    UnitPD,
    get_group,
)
from geozoo.objectives.sample_actions import IMAGE_GROUPS, image_action

ROOT = Path(__file__).resolve().parents[2]

# one example (or more) of every spelling in GROUP_NAMES, with the value it must give
EXAMPLES = {
    "so2": SO(2),
    "SO3": SO(3),
    "o3": Orthogonal(3),
    "o2": Orthogonal(2),
    "gl2": GLPlus(2),
    "sl3": SL(3),
    "so3_scaling": RotationScaling(3),
    "rs2": RotationScaling(2),
    "scaling": Scaling(3),
    "scaling2": Scaling(2),
    "pd2": PD(2),
    "unitpd3": UnitPD(3),
    "c8": Cyclic(8),
    "d4": Dihedral(4),
    "s5": Permutations(5),
    "trivial": Trivial(3),
    "trivial2": Trivial(2),
    " so2_z ": Embedded(SO(2), "z"),
    "o2_x": Embedded(Orthogonal(2), "x"),
    "c4_y": Embedded(Cyclic(4), "y"),
}


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_every_name_gives_its_value_and_the_canonical_name_round_trips(name):
    group = get_group(name)
    expected = EXAMPLES[name]
    assert group == expected and type(group) is type(expected)
    assert get_group(group.name) == group
    assert get_group(group) is group  # values pass through
    assert isinstance(group, MatrixGroup)
    sample = group.sample(3, torch.Generator().manual_seed(0), torch.float64)
    assert sample.shape == (3, group.n, group.n)


def test_examples_cover_every_spelling():
    def pattern(spelling: str) -> str:
        spelling = spelling.split(" (")[0]
        spelling = re.escape(spelling).replace("<n>", r"\d+").replace("<N>", r"\d+")
        return spelling.replace(r"<2x2\ group>", ".+").replace(r"<x\|y\|z>", "[xyz]")

    for spelling in GROUP_NAMES:
        matches = [n for n in EXAMPLES if re.fullmatch(pattern(spelling), n.strip().lower())]
        assert matches, f"no example of {spelling}"


def test_aliases_share_one_value_and_one_canonical_name():
    assert get_group("rs3") == get_group("so3_scaling") == RotationScaling(3)
    assert get_group("rs2").name == "so2_scaling"
    assert get_group("scaling3") == get_group("scaling") and get_group("scaling3").name == "scaling"
    assert get_group("trivial3").name == "trivial"
    # "so2" is one group: the matrix group, escnn's continuous rotations, and (embedded) so2_z
    assert get_group("so2") == SO(2) and get_group("so2_z").planar == get_group("so2")
    assert get_group("so2_z") != get_group("so2") and get_group("so2_z").n == 3


def test_sampler_parameters_go_to_the_constructor():
    assert get_group("gl2", pd_scale=0.3) == GLPlus(2, pd_scale=0.3) != GLPlus(2)
    assert get_group("rs2", pd_scale=0.3) == RotationScaling(2, pd_scale=0.3) != RotationScaling(2)
    assert get_group("scaling", max_log_scale=1.0) == Scaling(3, max_log_scale=1.0)
    with pytest.raises(ValueError, match=r"takes no parameter\(s\) \['pd_scale'\]"):
        get_group("so2", pd_scale=0.3)
    with pytest.raises(ValueError, match="apply to group names"):
        get_group(SO(2), pd_scale=0.3)


@pytest.mark.parametrize("name", ["x3", "so", "o4_q", "o3_z", "c0", "", "so2_w"])
def test_unknown_names_list_the_valid_ones(name):
    with pytest.raises(ValueError, match="unknown group") as info:
        get_group(name)
    for spelling in ("so<n>", "gl<n>", "c<N>", "d<N>", "o2_x"):
        assert spelling in str(info.value)


def test_non_strings_are_rejected():
    with pytest.raises(TypeError, match="group name or a group value"):
        get_group(3)  # type: ignore[arg-type]


def _group_strings(node, key: str = ""):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _group_strings(v, k)
    elif isinstance(node, list):
        for v in node:
            yield from _group_strings(v, key)
    elif isinstance(node, str) and key in ("group", "groups", "train_group") and node != "none":
        yield node


def test_shipped_recipes_and_checkpoints_name_valid_groups():
    """Every group string in configs/*.yaml and models/*/config.json still parses (YAML and
    published checkpoints keep working), to the kind of group its consumer needs."""
    found = {}
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        for name in _group_strings(yaml.safe_load(path.read_text())):
            found[name] = path.name
    for path in sorted((ROOT / "models").glob("*/config.json")):
        for name in _group_strings(json.loads(path.read_text())):
            found[name] = str(path.relative_to(ROOT))
    assert {"gl2", "sl2", "c8", "d4", "o3"} <= set(found), found
    for name in found:
        if name in IMAGE_GROUPS:  # the single image mirrors, named for the sample form only
            image_action(name)
        else:
            assert isinstance(get_group(name), MatrixGroup)
    assert get_group("c8").order == 8 and get_group("d4").order == 8
