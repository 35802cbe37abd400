"""The ``geozoo`` command.

``geozoo fit|validate|test|predict --config X`` is LightningCLI in subclass mode
(``class_path``/``init_args`` YAML for the model and the data; ``X`` is a YAML file or the name
of a shipped recipe such as ``affconv_gl2_mnist``); ``predict`` writes its predictions to a CSV
file (:class:`geozoo.callbacks.PredictionWriter`).
``geozoo zoo list|show|eval|train|export`` manages the model zoo.

Like ``python -m``, the command puts the working directory first on the import path, so a
recipe can name classes from the user's own modules (``class_path: my_package.MyLoss``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from lightning.pytorch.cli import ArgsType, LightningCLI

from geozoo.lightning_cli import GeozooCLI, import_failure_hint
from geozoo.zoo.recipes import lightning_cli, resolve_config_args

__all__ = ["GeozooCLI", "build_cli", "import_failure_hint", "main", "zoo_main"]


def build_cli(args: ArgsType = None, run: bool = True) -> LightningCLI:
    """The LightningCLI behind ``geozoo fit|validate|test|predict`` (``args`` as on the command
    line; ``run=False`` only parses and instantiates); configured once, in
    :func:`geozoo.zoo.recipes.lightning_cli`."""
    return lightning_cli(args, run)


def _zoo_list(ns: argparse.Namespace) -> int:
    from geozoo.zoo import list_models

    for name in list_models(ns.pattern, pretrained=ns.pretrained):
        print(name)
    return 0


def _zoo_show(ns: argparse.Namespace) -> int:
    from geozoo.zoo import card

    print(json.dumps(card(ns.name, weights=ns.weights), indent=2))
    return 0


def _zoo_eval(ns: argparse.Namespace) -> int:
    from geozoo.zoo import card, create_model
    from geozoo.zoo.evaluate import evaluate_entry

    config = card(ns.name, weights=ns.weights)
    model = create_model(ns.name, pretrained=True, weights=ns.weights)
    measured = evaluate_entry(ns.name, config, model)
    expected = config.get("metrics", {})
    width = max(map(len, measured)) + 2
    print(f"{'metric':<{width}}{'card':>10}{'measured':>10}{'diff':>10}")
    worst = 0.0
    for key, value in measured.items():
        card_value = expected.get(key)
        diff = "" if card_value is None else f"{value - card_value:+.2f}"
        if card_value is not None and key.endswith("/acc"):
            worst = max(worst, abs(value - card_value))
        shown = "-" if card_value is None else card_value
        print(f"{key:<{width}}{shown:>10}{value:>10}{diff:>10}")
    if worst > ns.tolerance:
        print(f"accuracy differs from the card by {worst:.2f} points (> {ns.tolerance})")
        return 1
    if ns.update_card:
        from geozoo.zoo.cards import render_model_card
        from geozoo.zoo.hub import resolve_checkpoint
        from geozoo.zoo.weights import write_config

        folder = resolve_checkpoint(ns.name, ns.weights)
        config["metrics"] = measured
        write_config(folder, config)
        (folder / "README.md").write_text(render_model_card(config))
        print(f"wrote the measured metrics into {folder.resolve() / 'config.json'} and README.md")
    return 0


def _report(folder, written: dict) -> int:
    print(f"wrote {folder}")
    for key, value in written["metrics"].items():
        print(f"  {key:<16} {value}")
    summary = written.get("seeds")
    if summary:
        print(f"seeds {summary['seeds']}: mean ± std; published seed {summary['published_seed']}")
        for key, mean in summary["mean"].items():
            print(f"  {key:<16} {mean} ± {summary['std'][key]}")
    return 0


def _comparison(path: str | None) -> str | None:
    if path is None:
        return None
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"--comparison expects a markdown file, got {path!r} (not a file)")
    return file.read_text()


def _zoo_train(ns: argparse.Namespace) -> int:
    from geozoo.zoo.publish import train_entry

    folder, written = train_entry(
        ns.name,
        ns.seeds,
        ns.fit_args,
        ns.output_dir,
        ns.force,
        recipe=ns.recipe,
        comparison=_comparison(ns.comparison),
    )
    return _report(folder, written)


def _zoo_export(ns: argparse.Namespace) -> int:
    from geozoo.zoo.publish import export_checkpoints

    folder, written = export_checkpoints(
        ns.name,
        ns.checkpoints,
        ns.config,
        ns.fit_args,
        ns.output_dir,
        ns.force,
        comparison=_comparison(ns.comparison),
    )
    return _report(folder, written)


def zoo_main(args: Sequence[str]) -> int:
    """``geozoo zoo ...``: list, show, eval, train and export zoo entries."""
    parser = argparse.ArgumentParser(prog="geozoo zoo", description="Manage the geozoo model zoo.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("list", help="list registered models")
    p.add_argument("pattern", nargs="?", default="*", help="shell-style pattern, e.g. 'affconv_*'")
    p.add_argument("--pretrained", action="store_true", help="only models with published weights")
    p.set_defaults(func=_zoo_list)
    p = sub.add_parser("show", help="print a checkpoint's card (config.json)")
    p.add_argument("name")
    p.add_argument("--weights", default=None, help="another checkpoint folder, URL or hf:// id")
    p.set_defaults(func=_zoo_show)
    p = sub.add_parser("eval", help="recompute a card's metrics and compare")
    p.add_argument("name")
    p.add_argument("--weights", default=None)
    p.add_argument("--tolerance", type=float, default=0.2, help="accuracy points (default 0.2)")
    p.add_argument(
        "--update-card",
        action="store_true",
        help="write the measured metrics into the card (only when they reproduce it)",
    )
    p.set_defaults(func=_zoo_eval)
    publishing = argparse.ArgumentParser(add_help=False)
    publishing.add_argument("--output-dir", default=None, help="default: the zoo's folder NAME")
    publishing.add_argument(
        "--force", action="store_true", help="replace a checkpoint already in the output folder"
    )
    publishing.add_argument(
        "--comparison",
        default=None,
        metavar="FILE",
        help="markdown comparing the entry with its baselines, printed by a script of the repo; "
        "shown on the card",
    )
    p = sub.add_parser(
        "train",
        parents=[publishing],
        help="train an entry from its recipe, evaluate, export and write its folder",
        epilog="Arguments after `--` go to the Lightning CLI, e.g. -- --trainer.max_epochs=3.",
    )
    p.add_argument("name")
    p.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=None,
        help="train once per seed; the card reports mean and std and the median seed is "
        "published (default: the recipe's seed only)",
    )
    p.add_argument("--recipe", default=None, help="another recipe (default: the shipped NAME)")
    p.set_defaults(func=_zoo_train)
    p = sub.add_parser(
        "export",
        parents=[publishing],
        help="publish `geozoo fit` checkpoints (one per seed) as an evaluated, carded folder",
        epilog="Arguments after `--` go to the Lightning CLI on top of the configuration.",
    )
    p.add_argument("checkpoints", nargs="+", metavar="CKPT", help="Lightning .ckpt file(s)")
    p.add_argument("--name", required=True, help="the registered model the checkpoints train")
    p.add_argument(
        "--config",
        default=None,
        help="recipe the runs were trained with (default: each run's saved config.yaml)",
    )
    p.set_defaults(func=_zoo_export)
    argv = list(args)
    fit_args: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, fit_args = argv[:cut], argv[cut + 1 :]
    ns = parser.parse_args(argv)
    if fit_args and ns.command not in ("train", "export"):
        parser.error(f"unrecognized arguments: {' '.join(fit_args)}")
    ns.fit_args = fit_args
    try:
        return ns.func(ns)
    except (
        KeyError,
        FileNotFoundError,
        FileExistsError,
        TypeError,
        ValueError,
        RuntimeError,
    ) as error:
        print(f"geozoo zoo {ns.command}: error: {error}", file=sys.stderr)
        return 2


def main(args: ArgsType = None) -> int | None:
    """Entry point of the ``geozoo`` console script; ``args`` lets tests call it in-process."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:  # as `python -m` does
        sys.path.insert(0, cwd)
    argv = list(sys.argv[1:] if args is None else args)
    if argv and argv[0] == "zoo":
        code = zoo_main(argv[1:])
        if args is None:
            sys.exit(code)
        return code
    build_cli(resolve_config_args(argv))
    return 0


if __name__ == "__main__":
    main()
