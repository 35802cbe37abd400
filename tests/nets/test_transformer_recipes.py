"""The two published MNIST transformers are trained by one recipe: only the network differs."""

from __future__ import annotations

import yaml

from geozoo.data import MNISTDataModule
from geozoo.zoo import create_model
from geozoo.zoo.recipes import configs_dir

ENTRIES = ("vit_tiny_mnist", "symformer_min_mnist")
#: the per-block options that make up the reductions of Bermeitinger et al. (2024)
REDUCTIONS = {"heads", "qk", "similarity", "vo", "mlp", "mlp_ratio"}


def _recipe(name: str) -> dict:
    return yaml.safe_load((configs_dir() / f"{name}.yaml").read_text())


def _network_args(recipe: dict) -> dict:
    return recipe["model"]["init_args"]["network"]["init_args"]


def test_entries_share_one_recipe():
    full, minimal = (_recipe(name) for name in ENTRIES)
    stems = []
    for recipe in (full, minimal):
        args = _network_args(recipe)
        stems.append({k: v for k, v in args.items() if k not in REDUCTIONS})
        recipe["model"]["init_args"]["network"]["init_args"] = {}
    assert stems[0] == stems[1]
    assert full == minimal


def test_recipe_builds_the_registered_architecture():
    # create_model(NAME) without weights must be the architecture the recipe trains
    for name in ENTRIES:
        model = create_model(name)
        args = _network_args(_recipe(name))
        assert model.patch_size == args["patch_size"]
        assert (model.dim, model.depth) == (args["dim"], args["depth"])
        assert model.blocks[0].attn.heads == args["heads"]
        assert (model.blocks[0].mlp is not None) == args["mlp"]


def test_one_cycle_schedule_covers_the_whole_run():
    for name in ENTRIES:
        recipe = _recipe(name)
        schedule = recipe["model"]["init_args"]["lr_scheduler"]["init_args"]
        data = MNISTDataModule(**recipe["data"]["init_args"])
        data.setup("fit")
        assert schedule["epochs"] == recipe["trainer"]["max_epochs"]
        assert schedule["steps_per_epoch"] == len(data.train_dataloader())
