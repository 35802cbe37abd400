"""The embedding task: margin head + objectives in training, verification on pairs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from geozoo.cli import build_cli, main
from geozoo.metrics import VerificationAccuracy
from geozoo.metrics.verification import pair_scores
from geozoo.nets import FaceEmbeddingNet
from geozoo.nn import ArcFaceHead
from geozoo.objectives import MarginCrossEntropy, SplitFaceSymmetry
from geozoo.objectives.symface import frontalness_from_landmarks, split_face
from geozoo.tasks import EmbeddingTask

TINY = [
    "--model.init_args.network.init_args.widths=[4, 8]",
    "--model.init_args.head.init_args.num_classes=8",
    "--data.init_args.num_identities=8",
    "--data.init_args.images_per_identity=4",
    "--data.init_args.val_identities=4",
    "--data.init_args.test_identities=4",
    "--data.init_args.eval_images_per_identity=3",
    "--data.init_args.pairs_per_fold=10",
    "--data.init_args.val_pairs_per_fold=2",
    "--data.init_args.batch_size=16",
    "--trainer.max_epochs=1",
    "--trainer.enable_progress_bar=false",
]


def test_training_step_sums_margin_and_split_face_losses() -> None:
    torch.manual_seed(0)
    network, head = FaceEmbeddingNet(widths=(4, 8)).eval(), ArcFaceHead(64, 5, s=16.0)
    task = EmbeddingTask(network, head, [MarginCrossEntropy(), SplitFaceSymmetry(weight=0.5)])
    logged = {}
    task.log_dict = lambda values, **kw: logged.update(values)
    images, labels = torch.rand(6, 3, 32, 32), torch.tensor([0, 1, 2, 3, 4, 0])
    landmarks = torch.tensor([[-1.0, 0.0], [1.0, 0.0], [0.1, 0.0]]).repeat(6, 1, 1)
    loss = task.training_step((images, labels, landmarks), 0)
    embeddings = network(images)
    margin = nn.functional.cross_entropy(head(embeddings, labels), labels)
    left, right = split_face(images)
    distance = 1 - nn.functional.cosine_similarity(network(left), network(right))
    rho = frontalness_from_landmarks(landmarks)
    torch.testing.assert_close(loss, margin + 0.5 * (rho * distance).mean(), rtol=1e-5, atol=1e-6)
    assert float(logged["train/split_face/rho"]) == pytest.approx(0.9)
    assert [type(o) for o in EmbeddingTask(network, head).objectives] == [MarginCrossEntropy]
    with pytest.raises(TypeError, match=r"head must be an nn\.Module"):
        EmbeddingTask(network, "arcface")


@pytest.mark.slow
def test_fit_logs_verification_of_the_held_out_pairs(tmp_path: Path) -> None:
    cli = build_cli(
        ["fit", "--config", "configs/symface_arcface_synthfaces.yaml", *TINY,
         f"--trainer.default_root_dir={tmp_path}"]
    )  # fmt: skip
    metrics = cli.trainer.callback_metrics
    for key in ("val/acc", "val/tar", "val/auc", "train/split_face/loss", "train/margin_ce/loss"):
        assert key in metrics and torch.isfinite(metrics[key]), key
    scores, same = pair_scores(cli.model.network, cli.datamodule.val_dataloader())
    accuracy = VerificationAccuracy(10)
    accuracy.update(scores, same)
    assert float(metrics["val/acc"]) == pytest.approx(float(accuracy.compute()), abs=1e-6)


def test_baseline_recipe_differs_only_by_the_split_face_loss() -> None:
    import yaml

    symface = yaml.safe_load(Path("configs/symface_arcface_synthfaces.yaml").read_text())
    baseline = yaml.safe_load(Path("configs/symface_baseline_arcface_synthfaces.yaml").read_text())
    objectives = symface["model"]["init_args"].pop("objectives")
    assert [o["class_path"] for o in objectives][1:] == ["geozoo.objectives.SplitFaceSymmetry"]
    assert baseline["model"]["init_args"].pop("objectives") == objectives[:1]
    for config in (symface, baseline):
        config["data"]["init_args"].pop("landmarks")
    assert symface == baseline


@pytest.mark.slow
def test_zoo_train_and_eval_of_the_face_entry(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "faces"
    args = ["zoo", "train", "symface_arcface_synthfaces", "--output-dir", str(folder), "--"]
    assert main([*args, *TINY, f"--trainer.default_root_dir={tmp_path}"]) == 0
    written = json.loads((folder / "config.json").read_text())
    assert set(written["metrics"]) == {"synthfaces/acc", "synthfaces/tar@far1e-3", "synthfaces/auc"}
    assert set(written["measurements"]) == {"synthfaces/mirror_distance"}
    assert "SYNTHETIC" in (folder / "README.md").read_text()
    capsys.readouterr()
    assert main(["zoo", "eval", "symface_arcface_synthfaces", "--weights", str(folder)]) == 0
    assert "+0.00" in capsys.readouterr().out


@pytest.mark.slow
def test_image_folder_recipe_trains_on_a_tiny_folder(tmp_path: Path) -> None:
    from PIL import Image

    g = torch.Generator().manual_seed(0)
    for i in range(8):
        (tmp_path / "faces" / f"id{i}").mkdir(parents=True)
        for j in range(3):
            pixels = (torch.rand(20, 20, 3, generator=g) * 255).to(torch.uint8).numpy()
            Image.fromarray(pixels).save(tmp_path / "faces" / f"id{i}" / f"{j}.png")
    cli = build_cli(
        ["fit", "--config", "configs/symface_arcface_imagefolder.yaml",
         f"--data.init_args.root={tmp_path / 'faces'}", "--data.init_args.image_size=16",
         "--data.init_args.val_identities=0.25", "--data.init_args.test_identities=0.25",
         # more matched pairs per fold than two batches hold: a sanity check would see no
         # mismatched pair
         "--data.init_args.pairs_per_fold=8", "--data.init_args.num_folds=2",
         "--model.init_args.num_folds=2", "--data.init_args.num_workers=0",
         "--data.init_args.batch_size=4",
         "--model.init_args.network.init_args.input_size=[16, 16]",
         "--model.init_args.network.init_args.widths=[4, 8]",
         "--model.init_args.network.init_args.embedding_dim=8",
         "--model.init_args.head.init_args.embedding_dim=8",
         "--model.init_args.head.init_args.num_classes=4",
         "--trainer.max_epochs=1", "--trainer.enable_progress_bar=false",
         f"--trainer.default_root_dir={tmp_path}"]
    )  # fmt: skip
    assert cli.trainer.state.finished
    assert torch.isfinite(cli.trainer.callback_metrics["val/acc"])


def test_test_step_scores_pairs_by_cosine_per_test_set() -> None:
    torch.manual_seed(0)
    network = FaceEmbeddingNet(widths=(4, 8)).eval()
    task = EmbeddingTask(network, ArcFaceHead(64, 3))
    task.log = lambda *args, **kwargs: None
    task.test_prefix = lambda index: f"test/{index}"  # no trainer, no data module names
    first, second = torch.rand(20, 3, 32, 32), torch.rand(20, 3, 32, 32)
    same = torch.arange(20) % 2 == 0
    task.test_step(((first, second), same), 0, dataloader_idx=1)
    assert len(task.test_metrics) == 2  # one collection per test set, made on first use
    scores = nn.functional.cosine_similarity(network(first), network(second))
    expected = VerificationAccuracy(10)
    expected.update(scores, same)
    computed = task.test_metrics[1].compute()
    assert float(computed["acc"]) == pytest.approx(float(expected.compute()))
    assert set(computed) == {"acc", "tar", "auc"}
