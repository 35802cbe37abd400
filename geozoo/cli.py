"""The ``geozoo`` command.

``geozoo fit|validate|test|predict --config configs/X.yaml`` is LightningCLI in subclass mode
(``class_path``/``init_args`` YAML for the model and the data);
``geozoo zoo list|show|eval|train`` manages the model zoo.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

import lightning as L
from lightning.pytorch.cli import ArgsType, LightningCLI

import geozoo.nn  # noqa: F401 - lets YAML configure geoopt.optim.RiemannianAdam (see geozoo.nn.riemannian)

__all__ = ["build_cli", "main", "zoo_main"]


def build_cli(args: ArgsType = None, run: bool = True) -> LightningCLI:
    """The LightningCLI behind ``geozoo fit|validate|test|predict`` (``args`` as on the command
    line; ``run=False`` only parses and instantiates)."""
    return LightningCLI(
        L.LightningModule,
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        seed_everything_default=0,
        save_config_kwargs={"overwrite": True},
        args=args,
        run=run,
    )


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
    measured = evaluate_entry(config, model)
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
    return 0


def _zoo_train(ns: argparse.Namespace) -> int:
    from geozoo.zoo.publish import publish_entry

    written = publish_entry(ns.name, output_dir=ns.output_dir, cli_args=ns.fit_args)
    print(f"wrote {ns.output_dir or 'models/' + ns.name}")
    for key, value in written["metrics"].items():
        print(f"  {key:<16} {value}")
    return 0


def zoo_main(args: Sequence[str]) -> int:
    """``geozoo zoo ...``: list, show, eval and train zoo entries."""
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
    p.set_defaults(func=_zoo_eval)
    p = sub.add_parser("train", help="train an entry from configs/NAME.yaml and write its folder")
    p.add_argument("name")
    p.add_argument("--output-dir", default=None, help="default: models/NAME")
    p.set_defaults(func=_zoo_train)
    ns, extra = parser.parse_known_args(list(args))
    if extra and ns.command != "train":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    ns.fit_args = [a for a in extra if a != "--"]
    try:
        return ns.func(ns)
    except (KeyError, FileNotFoundError, ValueError, RuntimeError) as error:
        print(f"geozoo zoo {ns.command}: error: {error}", file=sys.stderr)
        return 2


def main(args: ArgsType = None) -> int | None:
    """Entry point of the ``geozoo`` console script; ``args`` lets tests call it in-process."""
    argv = list(sys.argv[1:] if args is None else args)
    if argv and argv[0] == "zoo":
        code = zoo_main(argv[1:])
        if args is None:
            sys.exit(code)
        return code
    build_cli(argv)
    return 0


if __name__ == "__main__":
    main()
