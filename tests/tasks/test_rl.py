"""The RL task: a toy bandit with a known optimum, and one step of every objective."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from geozoo.objectives import FDPG, FDPO, GRPO, KDRL
from geozoo.rl import ClassificationBandit, ClassifierPolicy, DigitSumEnvironment, DigitSumPolicy
from geozoo.tasks import RLTask


def _trainer(**kwargs) -> L.Trainer:
    defaults = {
        "accelerator": "cpu",
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
    }
    return L.Trainer(**{**defaults, **kwargs})


def test_bandit_run_raises_expected_reward_to_the_known_optimum():
    """8 one-hot contexts, 5 arms, the label is the one rewarded arm: the optimum is 1."""
    L.seed_everything(0)
    contexts = torch.eye(8).repeat(16, 1)
    labels = torch.arange(8).remainder(5).repeat(16)
    loader = DataLoader(TensorDataset(contexts, labels), batch_size=16, shuffle=True)
    policy = ClassifierPolicy(torch.nn.Linear(8, 5, bias=False))
    torch.nn.init.zeros_(policy.network.weight)

    def expected_reward() -> float:
        with torch.no_grad():
            probs = policy(torch.eye(8)).softmax(-1)
        return float(probs[torch.arange(8), torch.arange(8).remainder(5)].mean())

    before = expected_reward()
    task = RLTask(
        policy,
        ClassificationBandit(),
        [GRPO(divergence="reverse_kl", estimator="k3", beta=0.01)],
        num_samples=8,
        optimizer=lambda params: torch.optim.Adam(params, lr=0.1),
    )
    _trainer(max_epochs=4).fit(task, loader)
    assert before == pytest.approx(0.2)
    assert expected_reward() > 0.9
    assert not any("reference" in k for k in task.state_dict())  # the frozen copy is not saved


def _digit_batches(n: int = 6) -> tuple[DataLoader, DataLoader]:
    g = torch.Generator().manual_seed(0)
    images = torch.rand(n, 1, 28, 56, generator=g)
    sums = torch.randint(0, 19, (n,), generator=g)
    labelled = torch.arange(n) % 2 == 0
    train = DataLoader(TensorDataset(images, sums, labelled), batch_size=n)
    return train, DataLoader(TensorDataset(images, sums), batch_size=n)


def _tiny_policy() -> DigitSumPolicy:
    torch.manual_seed(0)
    return DigitSumPolicy(dim=16, heads=2, layers=1, encoder_widths=(4, 8), encoder=None)


@pytest.mark.parametrize(
    "objectives",
    [
        lambda: [GRPO(divergence="js", beta=0.1), FDPO(weight=0.5)],
        lambda: [GRPO(divergence="forward_kl"), FDPG(divergence="js")],
        lambda: [KDRL(_tiny_policy(), divergence="reverse_kl", estimator="k2")],
    ],
)
def test_every_objective_trains_through_the_task(objectives):
    L.seed_everything(0)
    train, val = _digit_batches()
    policy = _tiny_policy()
    task = RLTask(policy, DigitSumEnvironment(), objectives(), num_samples=4, warmup_steps=1)
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    trainer = _trainer(max_steps=3, limit_val_batches=1, num_sanity_val_steps=0)
    trainer.fit(task, train, val)
    metrics = trainer.callback_metrics
    for key in ("train/warmup_nll", "train/reward", "train/entropy", "train/length", "val/pass@8"):
        assert key in metrics and torch.isfinite(metrics[key])
    assert "train/kl_ref" in metrics or not task._needs("needs_reference")
    assert any(not torch.equal(before[k], v) for k, v in policy.state_dict().items())
    assert all(torch.isfinite(v).all() for v in policy.state_dict().values())


def test_task_refuses_a_network_that_is_not_a_policy():
    with pytest.raises(TypeError, match="sample"):
        RLTask(torch.nn.Linear(2, 2), ClassificationBandit())
    with pytest.raises(ValueError, match="eval_samples"):
        RLTask(ClassifierPolicy(torch.nn.Linear(2, 2)), ClassificationBandit(), eval_samples=4)


@pytest.mark.parametrize(
    ("recipe", "tiny"),
    [
        (
            "configs/rl_digitsum_grpo.yaml",
            [
                "--model.init_args.network.init_args.pretrained_encoder=false",
                "--model.init_args.warmup_steps=1",
                "--data.init_args.train_prompts=64",
                "--data.init_args.batch_size=16",
            ],
        ),
        (
            "configs/rl_mnist_bandit.yaml",
            ["--model.init_args.warmup_steps=1", "--data.init_args.limit_train=128"],
        ),
    ],
)
def test_rl_recipes_train_through_the_cli(tmp_path, recipe, tiny):
    from geozoo.cli import build_cli

    cli = build_cli(
        [
            "fit",
            "--config",
            recipe,
            *tiny,
            "--trainer.fast_dev_run=2",
            f"--trainer.default_root_dir={tmp_path}",
        ]
    )
    metrics = cli.trainer.callback_metrics
    assert cli.trainer.global_step == 2
    assert "train/warmup_nll" in metrics and "train/reward" in metrics


def test_reference_copy_shares_the_frozen_encoder_and_encodes_once():
    policy = _tiny_policy()
    task = RLTask(policy, DigitSumEnvironment(), [GRPO(divergence="reverse_kl")], num_samples=3)
    reference = task.reference
    assert reference.backbone is policy.backbone  # frozen: shared, not copied
    assert reference.slot_proj is not policy.slot_proj  # trainable: copied
    calls = []
    policy.backbone.features.register_forward_hook(lambda *args: calls.append(1))
    train, _ = _digit_batches()
    images, sums, _ = next(iter(train))
    rollouts, _ = task.rollout(images, sums)
    assert len(calls) == 1  # the policy's sampling and the reference's scoring share it
    with torch.no_grad():
        unshared = _tiny_policy().log_probs(images.clone(), rollouts.responses, rollouts.group)
    torch.testing.assert_close(rollouts.ref_logp, unshared)
