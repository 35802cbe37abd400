"""scripts/reproduce_minimal_transformer.py: variants train from the shared recipe with their own
attention options, and the ablation table puts them between the published entries' cards."""

from __future__ import annotations

import json

import pytest

from geozoo.zoo import create_model
from geozoo.zoo.recipes import lightning_cli, recipe_path


@pytest.fixture(scope="module")
def script(load_script):
    return load_script("reproduce_minimal_transformer")


@pytest.mark.parametrize(
    "name", ["symformer_nomlp_mnist", "symformer_symvo_mnist", "symformer_wqk_novo_mnist"]
)
def test_variant_overrides_build_the_variant(script, name, tmp_path):
    # The overrides must pass the CLI's Literal checks (quoted JSON strings did not) and build
    # the registered variant from the shared recipe.
    recipe, overrides = script.recipe_of(name)
    assert recipe == script.SHARED_RECIPE
    cli = lightning_cli(
        [
            "--config",
            str(recipe_path(recipe)),
            *overrides,
            "--trainer.logger=false",
            f"--trainer.default_root_dir={tmp_path}",
        ],
        run=False,
    )
    built = cli.model.network
    assert script.attention_options(built) == script.attention_options(create_model(name))
    assert sum(p.numel() for p in built.parameters()) == sum(
        p.numel() for p in create_model(name).parameters()
    )


def test_symvo_is_the_minimal_model_with_value_output_kept(script):
    symvo = script.attention_options(create_model("symformer_symvo_mnist"))
    minimal = script.attention_options(create_model("symformer_min_mnist"))
    assert {k for k in symvo if symvo[k] != minimal[k]} == {"vo"}
    assert symvo["vo"] == "separate"


def test_change_names_what_differs(script):
    assert script.change("MLP, W_Q, W_K, 4 heads", "no MLP, W_Q, W_K, 4 heads") == "MLP → no MLP"
    assert script.change("no MLP, W_Q, W_K, W_V, W_O", "no MLP, W_QK, W_V, W_O") == (
        "W_Q, W_K → W_QK"
    )
    assert script.change("a, b", "a, b") == "none"


def test_step_is_the_difference_of_means_with_its_standard_error(script):
    # means 90 and 92; sample variances 1 and 4 over 3 seeds: se = sqrt(1/3 + 4/3)
    assert script.step([89.0, 90.0, 91.0], [90.0, 92.0, 94.0]) == "+2.00 ± 1.29"
    with pytest.raises(ValueError, match="at least 2 seeds per row, got 1 and 3"):
        script.step([90.0], [90.0, 92.0, 94.0])


def _run(variant: str, description: str, params: int, seed: int, acc: float) -> dict:
    return {
        "variant": variant,
        "seed": seed,
        "recipe": "symformer_min_mnist",
        "params": params,
        "description": description,
        "train_acc": acc + 3,
        "val_acc": acc + 1,
        "test_acc": acc,
        "epochs": 20,
        "seconds": 1.0,
        "cpu_seconds": 60.0,
    }


def test_ablation_table_orders_rows_from_full_to_minimal(script, tmp_path, monkeypatch):
    cards = {
        "vit_tiny_mnist": ("MLP, W_Q, W_K, W_V, W_O, 4 heads", 303_498, [94.0, 95.0, 96.0]),
        "symformer_min_mnist": ("no MLP, W_QK = T T^T, no W_V/W_O, 4 heads", 55_818, [90.0] * 3),
    }

    def from_cards(name):
        description, params, accs = cards[name]
        return [
            {
                "variant": name,
                "seed": seed,
                "recipe": name,
                "params": params,
                "description": description,
                "test_acc": acc,
                "cpu_seconds": 0.0,
                "source": "card",
            }
            for seed, acc in enumerate(accs)
        ]

    monkeypatch.setattr(script, "from_cards", from_cards)
    monkeypatch.setattr(
        script, "published_fit", lambda name: (1, {"train_acc": 99.0, "val_acc": 97.0})
    )
    symvo = "no MLP, W_QK = T T^T, W_V, W_O, 4 heads"
    path = tmp_path / "symvo.json"
    runs = [_run("symformer_symvo_mnist", symvo, 108_634, s, 92.0 + s) for s in (0, 1, 2)]
    path.write_text(json.dumps({"command": "train symvo", "results": runs}))
    results, commands = script.ablation([path])
    assert commands == ["train symvo"]
    assert [r["variant"] for r in results[::3]] == [
        "vit_tiny_mnist",
        "symformer_symvo_mnist",
        "symformer_min_mnist",
    ]
    rows = script.table(results, steps=True).splitlines()
    assert rows[0].split(" | ")[2] == "change from the row above"
    # cards: held-out accuracy of every seed, train and validation of the published one only
    assert rows[2].endswith("| 99.00 (1 seed) | 97.00 (1 seed) | 95.00 ± 1.00 |  |")
    assert "| MLP, W_Q, W_K → no MLP, W_QK = T T^T |" in rows[3]
    assert rows[3].endswith("| 96.00 ± 1.00 | 94.00 ± 1.00 | 93.00 ± 1.00 | -2.00 ± 0.82 |")
    assert "| W_V, W_O → no W_V/W_O |" in rows[4]
    assert rows[4].endswith("| 90.00 ± 0.00 | -3.00 ± 0.58 |")


def test_ablation_refuses_runs_without_held_out_accuracy(script, tmp_path):
    # a --tune run leaves the held-out digits out; the steps between rows need them
    description = "no MLP, W_QK = T T^T, W_V, W_O, 4 heads"
    runs = [_run(name, description, 1, s, 90.0) for name in script.ENTRIES for s in (0, 1)]
    del runs[-1]["test_acc"]
    path = tmp_path / "tuned.json"
    path.write_text(json.dumps({"command": "tune it", "results": runs}))
    with pytest.raises(ValueError, match=r"held-out accuracy, which .*tuned.json \(`tune it`"):
        script.ablation([path])


def test_ablation_refuses_runs_of_an_older_architecture(script, tmp_path):
    # 104,970 parameters: symvo with the 4x4 patch stem, before the convolutional stem
    symvo = "no MLP, W_QK = T T^T, W_V, W_O, 4 heads"
    path = tmp_path / "old.json"
    runs = [_run("symformer_symvo_mnist", symvo, 104_970, s, 92.0) for s in (0, 1, 2)]
    path.write_text(json.dumps({"command": "train symvo", "results": runs}))
    with pytest.raises(ValueError, match=r"104,970 parameters, but its builder now makes 108,634"):
        script.ablation([path])


def test_published_fit_evaluates_the_published_seed(script, monkeypatch):
    from torch.utils.data import DataLoader, Subset

    from geozoo.zoo import card

    loaders = script.fit_loaders

    def first_digits(data):  # 200 of each split keep the test fast
        return {
            split: DataLoader(Subset(loader.dataset, range(200)), batch_size=200)
            for split, loader in loaders(data).items()
        }

    monkeypatch.setattr(script, "fit_loaders", first_digits)
    seed, fit = script.published_fit("symformer_min_mnist")
    assert seed == card("symformer_min_mnist")["seeds"]["published_seed"]
    assert set(fit) == {"train_acc", "val_acc"}
    assert 85.0 < fit["train_acc"] <= 100.0 and 85.0 < fit["val_acc"] <= 100.0


def test_write_docs_replaces_only_its_block(script, tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text(f"a\n{script.BEGIN}\nold entries\n{script.END}\nb\n")
    doc.write_text(doc.read_text() + f"{script.ABLATION_BEGIN}\nold ablation\n{script.END}\nc\n")
    script.write_docs("new ablation", doc, begin=script.ABLATION_BEGIN)
    text = doc.read_text()
    assert "old entries" in text and "old ablation" not in text
    assert f"{script.ABLATION_BEGIN}\nnew ablation\n{script.END}\nc\n" in text
    with pytest.raises(ValueError, match=r"has no <!-- other --> \.\.\. <!-- end --> block"):
        script.write_docs("x", doc, begin="<!-- other -->")
