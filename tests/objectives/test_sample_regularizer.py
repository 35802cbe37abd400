"""The sample-form regularizer for any network and input kind: images through geozoo.testing
transforms, point clouds, representations; checked when built, and effective on a CNN."""

from __future__ import annotations

import pytest
import torch

from geozoo.groups import SO, Cyclic, Dihedral
from geozoo.groups.representations import Vector
from geozoo.nets import PlainCNN
from geozoo.nets.equivariant_mlp import PlainMLP
from geozoo.objectives import (
    CrossEntropy,
    MixedSymmetryRegularizer,
    SampleEquivarianceRegularizer,
    StepContext,
    TransformAction,
)
from geozoo.objectives.sample_actions import RandomRotationAction, image_action, image_elements
from geozoo.tasks import ClassificationTask, RegressionTask
from geozoo.testing import d4_elements, equivariance_error, flip, rot90


@pytest.fixture
def one_thread():
    """Tiny networks run fastest on one thread, whatever else the machine runs."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _bars(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Faint noise with one bright bar: class 0 horizontal, class 1 vertical. A quarter turn
    swaps the classes, so an unregularized classifier is far from rotation invariant."""
    x = 0.1 * torch.rand(n, 1, 12, 12, generator=generator)
    y = torch.randint(0, 2, (n,), generator=generator)
    position = torch.randint(2, 10, (n,), generator=generator)
    for i in range(n):
        if y[i] == 0:
            x[i, 0, position[i], 2:10] = 1.0
        else:
            x[i, 0, 2:10, position[i]] = 1.0
    return x, y


def _train_cnn(regularize: bool, steps: int = 60) -> float:
    torch.manual_seed(0)
    net = PlainCNN(1, 2, widths=(4, 8), input_size=(12, 12), dropout=0.0)
    objectives = [CrossEntropy()]
    if regularize:
        objectives.append(
            MixedSymmetryRegularizer(
                ["c4"], form="sample", inputs="images", schedule="fixed", init_strength=10.0
            )
        )
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x, y = _bars(32, generator)
        ctx = StepContext(inputs=x, targets=y, outputs=net(x), network=net)
        loss = sum(o.weight * o(ctx).loss for o in objectives)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    x_test, _ = _bars(64, torch.Generator().manual_seed(2))
    return equivariance_error(net, x_test, [rot90(k) for k in (1, 2, 3)]).mean


def test_sample_regularizer_makes_a_cnn_more_invariant(one_thread) -> None:
    plain, regularized = _train_cnn(False), _train_cnn(True)
    assert plain > 0.5  # the data pulls away from invariance ...
    assert regularized < 0.3 * plain  # ... and the regularizer pulls back


def test_missing_action_fails_when_the_task_is_built_not_at_the_first_step() -> None:
    cnn = PlainCNN(1, 2, widths=(4,), input_size=(12, 12))
    regularizer = MixedSymmetryRegularizer(["o2_z"], form="sample")  # flat features by default
    with pytest.raises(TypeError, match="inputs='images' with image groups such as"):
        ClassificationTask(cnn, [CrossEntropy(), regularizer])
    with pytest.raises(TypeError, match="rep_linears"):
        ClassificationTask(cnn, [CrossEntropy(), MixedSymmetryRegularizer(["o3"])])


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"groups": ["c5"], "inputs": "images"}, ValueError, "'c5' does not act exactly on"),
        ({"groups": ["c4x"], "inputs": "images"}, ValueError, "unknown image group 'c4x'"),
        ({"groups": ["c4"], "inputs": "pixels"}, ValueError, "inputs must be one of"),
        ({"groups": ["o3"], "rep_in": [0, 1]}, ValueError, "give both rep_in and rep_out"),
        ({"groups": ["o3"], "inputs": "points", "rep_in": [1]}, ValueError, "rep_out only"),
        ({"groups": ["c4"], "inputs": "images", "rep_out": [1]}, ValueError, "image groups"),
        ({"groups": ["o3"], "num_samples": 0}, ValueError, "num_samples"),
    ],
)
def test_invalid_sample_form_arguments_fail_at_construction(kwargs, error, message) -> None:
    with pytest.raises(error, match=message):
        MixedSymmetryRegularizer(form="sample", **kwargs)


def test_projection_form_refuses_sample_arguments() -> None:
    with pytest.raises(ValueError, match="belong to form='sample'"):
        MixedSymmetryRegularizer(["c4"], inputs="images")


def test_point_clouds_invariant_and_equivariant_outputs() -> None:
    points = torch.randn(6, 5, 3, dtype=torch.float64)

    class Centroid(torch.nn.Module):  # equivariant: rotates with the points
        def forward(self, x):
            return x.mean(1)

    class Spread(torch.nn.Module):  # invariant: distances to the centroid
        def forward(self, x):
            return (x - x.mean(1, keepdim=True)).norm(dim=-1).sort(-1).values

    class FirstCoordinate(torch.nn.Module):  # neither
        def forward(self, x):
            return x[..., 0]

    def value(net, **kwargs):
        objective = SampleEquivarianceRegularizer("so3", inputs="points", **kwargs)
        ctx = StepContext(inputs=points, targets=None, outputs=net(points), network=net)
        return float(objective(ctx).loss)

    assert value(Spread()) < 1e-24
    assert value(Centroid(), rep_out=Vector) < 1e-24
    assert value(FirstCoordinate()) > 1e-2
    assert value(Centroid()) > 1e-2  # an equivariant output is not invariant


@pytest.mark.parametrize("group", ["o2_z", "so2_x", "so3_scaling", "trivial"])
def test_point_clouds_any_group_acting_on_r3(group) -> None:
    # the space a group acts on is group.n; group.dim (its Lie dimension) is 1, 1, 4, 0 here
    points = torch.randn(4, 5, 3, dtype=torch.float64)

    class Centroid(torch.nn.Module):  # equivariant under every linear map
        def forward(self, x):
            return x.mean(1)

    objective = SampleEquivarianceRegularizer(group, inputs="points", rep_out=Vector)
    net = Centroid()
    ctx = StepContext(inputs=points, targets=None, outputs=net(points), network=net)
    assert float(objective(ctx).loss) < 1e-24
    with pytest.raises(ValueError, match=r"R\^3: expected inputs \(N, K, 3\)"):
        objective(StepContext(inputs=points[..., :2], targets=None, outputs=None, network=net))


def test_group_of_another_dimension_fails_when_the_task_is_built() -> None:
    net = PlainMLP([0, 2], [0, 1], width=8, num_layers=2)  # over R^3
    with pytest.raises(ValueError, match=r"o2 acts on R\^2, but PlainMLP's representations"):
        RegressionTask(net, [MixedSymmetryRegularizer(["o3", "o2"], form="sample")])


def test_representations_from_the_network_or_given() -> None:
    torch.manual_seed(0)
    net = PlainMLP([0, 2], [0, 1], width=8, num_layers=2).double()
    task = RegressionTask(net, [MixedSymmetryRegularizer(["o3", "o2_z"], form="sample")])
    x = torch.randn(5, 6, dtype=torch.float64)
    ctx = StepContext(inputs=x, targets=None, outputs=net(x), network=net)
    torch.manual_seed(1)
    from_network = task.objectives[0].penalties(ctx)
    given = MixedSymmetryRegularizer(["o3", "o2_z"], form="sample", rep_in=[0, 2], rep_out=[0, 1])
    torch.manual_seed(1)
    torch.testing.assert_close(given.penalties(ctx), from_network)


def test_transform_action_with_equivariant_outputs() -> None:
    conv = torch.nn.Conv2d(1, 1, 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[[[0.0, 1.0, 0.0], [1.0, 4.0, 1.0], [0.0, 1.0, 0.0]]]]))
    x = torch.rand(2, 1, 8, 8)
    elements = [rot90(1), flip("horizontal")]
    action = TransformAction(elements, elements, name="d4_part")
    objective = SampleEquivarianceRegularizer(action, num_samples=4)
    assert objective.name == "sample_equiv_d4_part"
    loss = objective(StepContext(inputs=x, targets=None, outputs=conv(x), network=conv)).loss
    assert float(loss.detach()) < 1e-10  # a symmetric stencil commutes with both
    invariant = SampleEquivarianceRegularizer(TransformAction(elements), num_samples=4)
    ctx = StepContext(inputs=x, targets=None, outputs=conv(x), network=conv)
    assert float(invariant(ctx).loss.detach()) > 1e-3  # feature maps move: not invariant


def test_recipe_builds_a_regularized_cnn(tmp_path) -> None:
    from geozoo.cli import build_cli

    cli = build_cli(
        [
            "--config",
            "configs/softeq_sample_cnn_mnist.yaml",
            f"--trainer.default_root_dir={tmp_path}",
        ],
        run=False,
    )
    assert isinstance(cli.model.network, PlainCNN)
    regularizer = cli.model.objectives[1]
    assert regularizer.group_names == ["c4", "so2", "flip"]
    x = torch.rand(4, 1, 28, 28)
    ctx = StepContext(
        inputs=x, targets=None, outputs=cli.model.network(x), network=cli.model.network
    )
    values = regularizer.penalties(ctx)
    assert values.shape == (3,) and bool((values > 0).all())


def test_image_groups_are_named_as_everywhere_in_geozoo() -> None:
    # the names of geozoo.groups.get_group, and its values: D1 is the mirror about the x axis
    assert [t.name for t in image_elements("c4")] == [f"rot90(k={k})" for k in (1, 2, 3)]
    assert [t.name for t in image_elements(Dihedral(4))] == [t.name for t in d4_elements()]
    assert len(image_elements("d2")) == 3 and len(image_elements(Cyclic(2))) == 1
    x = torch.rand(2, 1, 7, 7)
    torch.testing.assert_close(image_elements("d1")[0](x), flip("vertical")(x))
    assert isinstance(image_action("so2"), RandomRotationAction)
    assert image_action(SO(2)).name == "so2"
    regularizer = MixedSymmetryRegularizer(
        ["C4", Dihedral(2), "flip"], form="sample", inputs="images"
    )
    assert regularizer.group_names == ["c4", "d2", "flip"]
    assert regularizer.groups == [Cyclic(4), Dihedral(2), None]
    assert MixedSymmetryRegularizer(["so2"], form="sample", inputs="images").groups == [SO(2)]
    for group in ("c1", "c8", "o2_z"):
        with pytest.raises(ValueError, match="does not act exactly on the pixel grid"):
            image_action(group)


def test_image_regularizer_pickles_for_spawned_processes() -> None:
    import pickle

    regularizer = MixedSymmetryRegularizer(["c4", "so2", "d4"], form="sample", inputs="images")
    copy = pickle.loads(pickle.dumps(regularizer))
    assert copy.group_names == ["c4", "so2", "d4"]
    x = torch.rand(2, 1, 8, 8)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3))
    ctx = StepContext(inputs=x, targets=None, outputs=net(x), network=net)
    assert copy.penalties(ctx).shape == (3,)
