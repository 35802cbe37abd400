import pytest
import torch
from torch import nn

from geozoo.objectives import CrossEntropy, Objective, ObjectiveOutput
from geozoo.tasks import ClassificationTask


class MeanLogit(Objective):
    """A toy objective: the mean logit, logging its absolute value."""

    def forward(self, ctx):
        value = ctx.outputs.mean()
        return ObjectiveOutput(value, {"abs": value.abs()})


def _task(objectives):
    torch.manual_seed(0)
    return ClassificationTask(
        nn.Sequential(nn.Flatten(), nn.Linear(4, 3)), objectives, num_classes=3
    )


def test_total_loss_is_the_weighted_sum_of_objectives():
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
    task = _task([CrossEntropy(weight=0.5), MeanLogit(weight=2.0)])
    logged = {}
    task.log_dict = lambda values, **kw: logged.update(values)
    task.log = lambda *a, **kw: None
    loss = task.training_step((x, y), 0)
    logits = task.network(x)
    expected = 0.5 * nn.functional.cross_entropy(logits, y) + 2.0 * logits.mean()
    torch.testing.assert_close(loss, expected)
    assert {"train/ce/loss", "train/mean_logit/loss", "train/mean_logit/abs", "train/loss"} <= set(
        logged
    )


def test_default_objective_is_cross_entropy():
    assert [type(o) for o in _task(None).objectives] == [CrossEntropy]


def test_bad_objectives_are_rejected():
    with pytest.raises(TypeError, match="Objective"):
        _task([nn.MSELoss()])
    with pytest.raises(ValueError, match="unique"):
        _task([CrossEntropy(), CrossEntropy()])
    with pytest.raises(ValueError, match="empty"):
        _task([])


def test_frozen_parameters_are_not_optimised():
    task = _task(None)
    task.network[1].bias.requires_grad_(False)
    optimizer = task.configure_optimizers()
    params = [p for group in optimizer.param_groups for p in group["params"]]
    assert all(p is not task.network[1].bias for p in params)


def test_plateau_scheduler_monitors_val_loss():
    from functools import partial

    task = ClassificationTask(
        nn.Linear(4, 3),
        num_classes=3,
        lr_scheduler=partial(torch.optim.lr_scheduler.ReduceLROnPlateau),
    )
    config = task.configure_optimizers()
    assert config["lr_scheduler"]["monitor"] == "val/loss"


def test_one_cycle_is_stepped_every_batch_and_cosine_every_epoch():
    from functools import partial

    def interval(factory):
        task = ClassificationTask(nn.Linear(4, 3), num_classes=3, lr_scheduler=factory)
        return task.configure_optimizers()["lr_scheduler"]["interval"]

    one_cycle = partial(torch.optim.lr_scheduler.OneCycleLR, max_lr=0.1, total_steps=10)
    assert interval(one_cycle) == "step"
    assert interval(partial(torch.optim.lr_scheduler.CosineAnnealingLR, T_max=3)) == "epoch"
