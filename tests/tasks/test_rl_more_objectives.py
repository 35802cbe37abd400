"""APO, VOGUE, RECAP and a SALSA soup reference train through the RL task."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from geozoo.objectives import (
    APO,
    GRPO,
    KLDRO,
    VOGUE,
    AnswerReplay,
    BestOfNDistillation,
    DynamicReweighting,
    PerPromptGRPO,
    StepContext,
)
from geozoo.objectives.vogue import GaussianNoise
from geozoo.rl import DigitSumEnvironment, DigitSumPolicy
from geozoo.tasks import RLTask
from geozoo.zoo.soup import ModelSoup


def _batches(n: int = 6, labelled: bool = False) -> tuple[DataLoader, DataLoader]:
    g = torch.Generator().manual_seed(0)
    images = torch.rand(n, 1, 28, 56, generator=g)
    sums = torch.randint(0, 19, (n,), generator=g)
    train = (images, sums, torch.arange(n) % 3 == 0) if labelled else (images, sums)
    return (
        DataLoader(TensorDataset(*train), batch_size=n),
        DataLoader(TensorDataset(images, sums), batch_size=n),
    )


def _policy(seed: int = 0) -> DigitSumPolicy:
    torch.manual_seed(seed)
    return DigitSumPolicy(dim=16, heads=2, layers=1, encoder_widths=(4, 8), encoder=None)


def _fit(task: RLTask, steps: int = 3, labelled: bool = False) -> dict[str, torch.Tensor]:
    train, val = _batches(labelled=labelled)
    trainer = L.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        max_steps=steps,
        limit_val_batches=1,
        num_sanity_val_steps=0,
    )
    trainer.fit(task, train, val)
    return trainer.callback_metrics


@pytest.mark.parametrize(
    ("objectives", "keys"),
    [
        (lambda: [APO(stcr_base=2.0)], ["train/apo/difficulty", "train/kl_ref"]),
        (
            lambda: [VOGUE(perturbation=GaussianNoise(0.2), share_start=1.0, anneal_steps=2)],
            ["train/vogue/uncertainty", "train/vogue/perturbed_share"],
        ),
        (
            lambda: [
                DynamicReweighting(
                    [GRPO(name="grpo"), APO(name="apo")],
                    window=4,
                    signals={"grpo": "rollouts.rewards"},
                    higher_is_better=["grpo"],
                )
            ],
            ["train/recap/grpo/weight", "train/recap/apo/weight"],
        ),
        (
            lambda: [DynamicReweighting([GRPO(name="grpo"), AnswerReplay()], window=4)],
            ["train/recap/replay/loss", "train/recap/replay/weight"],
        ),
        (
            lambda: [KLDRO(PerPromptGRPO(divergence="reverse_kl", beta=0.1), r=0.5)],
            ["train/kl_dro/effective_samples", "train/kl_ref"],
        ),
        (lambda: [BestOfNDistillation()], ["train/best_of_n/best_reward"]),
    ],
)
def test_objectives_train_through_the_rl_task(objectives, keys):
    L.seed_everything(0)
    policy = _policy()
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    # a format reward: an untrained policy rarely answers right, but its answers differ in form,
    # so the advantages are not all zero and every objective has something to learn from
    task = RLTask(policy, DigitSumEnvironment(format_reward=0.5), objectives(), num_samples=4)
    metrics = _fit(task, labelled=True)
    for key in ["train/reward", "val/pass@8", *keys]:
        assert key in metrics and torch.isfinite(metrics[key]), key
    assert any(not torch.equal(before[k], v) for k, v in policy.state_dict().items())


def test_labelled_rows_are_replayed_with_the_warmup_loss(monkeypatch):
    """RL samples only the unlabelled rows; the labelled ones reach the objectives as
    ``extras["replay"]``, where AnswerReplay is the task's own warm-up loss on them."""
    L.seed_everything(0)
    replay = AnswerReplay()
    task = RLTask(_policy(), DigitSumEnvironment(), [GRPO(), replay], num_samples=2)
    seen = {}

    def spy(ctx: StepContext):
        seen["ctx"] = ctx
        return AnswerReplay.forward(replay, ctx)

    monkeypatch.setattr(replay, "forward", spy)
    images, sums, labelled = next(iter(_batches(labelled=True)[0]))
    task.training_step((images, sums, labelled), 0)
    ctx = seen["ctx"]
    prompts, targets = ctx.extras["replay"]
    assert torch.equal(prompts, images[labelled]) and torch.equal(targets, sums[labelled])
    assert torch.equal(ctx.extras["rollouts"].prompts, images[~labelled])
    loss = AnswerReplay.forward(replay, ctx).loss
    torch.testing.assert_close(loss, task.warmup_loss(images[labelled], sums[labelled]))
    del ctx.extras["replay"]  # no labelled row in the batch: nothing to replay
    assert AnswerReplay.forward(replay, ctx).loss.item() == 0.0
    bare = StepContext(images, sums, ctx.outputs, task.network, extras={"replay": (images, sums)})
    with pytest.raises(ValueError, match="needs an environment"):
        replay(bare)
    explicit = AnswerReplay(environment=DigitSumEnvironment())
    torch.testing.assert_close(explicit(bare).loss, task.warmup_loss(images, sums))


def test_vogue_share_reaches_the_task_rollouts():
    L.seed_everything(0)
    vogue = VOGUE(share_start=1.0, share_end=1.0, anneal_steps=0)
    task = RLTask(_policy(), DigitSumEnvironment(), [vogue], num_samples=2)
    images, sums = next(iter(_batches()[0]))
    rollouts, _ = task.rollout(images, sums)
    assert bool(rollouts.extras["vogue_perturbed"].all())
    assert not torch.equal(rollouts.prompts, images)  # sampled on the perturbed images
    assert torch.equal(rollouts.extras["vogue_other_prompts"], images)


def test_recap_forwards_the_sampling_hook_of_a_wrapped_vogue():
    vogue = VOGUE(share_start=1.0, share_end=1.0, anneal_steps=0)
    recap = DynamicReweighting([GRPO(name="grpo"), vogue], window=4)
    task = RLTask(_policy(), DigitSumEnvironment(), [recap], num_samples=2)
    images, sums = next(iter(_batches()[0]))
    rollouts, _ = task.rollout(images, sums, step=3)
    assert bool(rollouts.extras["vogue_perturbed"].all())


def test_salsa_soup_is_the_reference_policy():
    L.seed_everything(0)
    a, b = _policy(1), _policy(2)
    soup = ModelSoup([a, b])
    task = RLTask(_policy(0), DigitSumEnvironment(), [APO()], num_samples=2, reference=soup)
    metrics = _fit(task, steps=2)
    assert torch.isfinite(metrics["train/kl_ref"])
    assert not any("reference" in k for k in task.state_dict())  # frozen, not saved
    images, sums = next(iter(_batches()[0]))
    rollouts, _ = task.rollout(images, sums)
    expected = soup.module.log_probs(images, rollouts.responses, rollouts.group)
    assert torch.allclose(rollouts.ref_logp, expected)


@pytest.mark.parametrize(
    "recipe", ["configs/rl_digitsum_apo.yaml", "configs/rl_digitsum_vogue.yaml"]
)
def test_recipes_train_through_the_cli(tmp_path, recipe):
    from geozoo.cli import build_cli

    cli = build_cli(
        [
            "fit",
            "--config",
            recipe,
            "--model.init_args.network.init_args.pretrained_encoder=false",
            "--model.init_args.warmup_steps=1",
            "--data.init_args.train_prompts=64",
            "--data.init_args.batch_size=16",
            "--trainer.fast_dev_run=2",
            f"--trainer.default_root_dir={tmp_path}",
        ]
    )
    metrics = cli.trainer.callback_metrics
    assert cli.trainer.global_step == 2
    name = "apo" if "apo" in recipe else "vogue"
    assert "train/reward" in metrics and f"train/{name}/loss" in metrics
