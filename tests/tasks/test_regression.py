"""The regression task, the ADE metric, and the mixed-symmetry configs through the CLI."""

from __future__ import annotations

import pytest
import torch

from geozoo.metrics.regression import average_displacement_error


def test_average_displacement_error_closed_form() -> None:
    pred = torch.zeros(2, 6)
    target = torch.tensor([[3.0, 4.0, 0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    # distances per point: 5, 1 | 0, 0  -> mean 1.5
    assert float(average_displacement_error(pred, target)) == pytest.approx(1.5)
    with pytest.raises(ValueError, match="equal shape"):
        average_displacement_error(pred, target[:, :3])


@pytest.mark.parametrize(
    "name",
    [
        "softeq_inertia",
        pytest.param("softeq_cossim", marks=pytest.mark.slow),
        pytest.param("softeq_motion", marks=pytest.mark.slow),
    ],
)
def test_config_trains_through_the_cli(name: str, tmp_path) -> None:
    from geozoo.cli import build_cli

    cli = build_cli(
        [
            "fit",
            "--config",
            f"configs/{name}.yaml",
            "--trainer.fast_dev_run=true",
            f"--trainer.default_root_dir={tmp_path}",
            "--trainer.enable_progress_bar=false",
            "--data.init_args.num_train=50",
            "--data.init_args.num_val=20",
            "--data.init_args.num_test=20",
            "--data.init_args.batch_size=25",
        ]
    )
    metrics = cli.trainer.callback_metrics
    assert torch.isfinite(metrics["train/loss"])
    assert "train/mixed_symmetry/strength_o3" in metrics or (
        "train/mixed_symmetry/strength_so3" in metrics
    )
