"""The ``geozoo`` command.

``geozoo fit|validate|test|predict --config configs/X.yaml`` is LightningCLI in subclass mode
(``class_path``/``init_args`` YAML for the model and the data); ``predict`` writes its
predictions to a CSV file (:class:`geozoo.callbacks.PredictionWriter`).
``geozoo zoo list|show|eval|train`` manages the model zoo.

Like ``python -m``, the command puts the working directory first on the import path, so a
recipe can name classes from the user's own modules (``class_path: my_package.MyLoss``).
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import json
import os
import re
import sys
from collections.abc import Sequence
from typing import NoReturn

import lightning as L
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI

from geozoo.callbacks import PredictionWriter

__all__ = ["GeozooCLI", "build_cli", "main", "zoo_main"]

DESCRIPTION = (
    "Train, evaluate and predict: geozoo fit|validate|test|predict --config FILE (options "
    "below; predict writes predictions.csv). Manage the model zoo: geozoo zoo list|show|eval|"
    "train (see geozoo zoo --help)."
)

_REASON = (
    r"(?P<reason>No module named '(?P<module>[^']+)'|module '(?P<parent>[^']+)' has no attribute "
    r"'(?P<attribute>[^']+)')"
)
_IMPORT_FAILURES = (
    re.compile(r"Problem with given class_path '(?P<path>[^']+)':\s*" + _REASON),
    # callable arguments (optimizer, lr_scheduler) give the reason first
    re.compile(_REASON + r"\. Got value: Namespace\(class_path='(?P<path>[^']+)'"),
)


def import_failure_hint(message: str) -> str | None:
    """A short, actionable first line for a parser message caused by an unimportable
    ``class_path`` (``None`` when the message has another cause)."""
    match = next(filter(None, (pattern.search(message) for pattern in _IMPORT_FAILURES)), None)
    if match is None:
        return None
    path, reason = match["path"], match["reason"]
    if match["module"] is not None:
        top = match["module"].split(".")[0]
        return (
            f"cannot import class_path {path!r}: {reason}. geozoo imports classes from installed "
            f"packages and from the working directory ({os.getcwd()}): run it from the folder "
            f"that holds {top}/ or {top}.py, or add that folder to PYTHONPATH."
        )
    try:
        names = dir(importlib.import_module(match["parent"]))
    except ImportError:
        names = []
    close = difflib.get_close_matches(match["attribute"], names, n=3)
    suggestion = f" Did you mean {', '.join(close)}?" if close else ""
    return f"cannot import class_path {path!r}: {reason}.{suggestion}"


class _ArgumentParser(LightningArgumentParser):
    """Puts the cause of an unimportable ``class_path`` first, without the usage text."""

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        hint = import_failure_hint(message)
        if hint is None or not self.exit_on_error or os.environ.get("JSONARGPARSE_DEBUG"):
            super().error(message, ex)
        prog = self.prog.replace(" [options]", "")
        sys.stderr.write(f"{prog}: error: {hint}\n\nThe parser's full message:\n{message}\n")
        self.exit(2)


class GeozooCLI(LightningCLI):
    """LightningCLI with geozoo's parser and a :class:`PredictionWriter` on ``predict``."""

    def before_predict(self) -> None:
        if not any(isinstance(c, BasePredictionWriter) for c in self.trainer.callbacks):
            self.trainer.callbacks.append(PredictionWriter())


def build_cli(args: ArgsType = None, run: bool = True) -> LightningCLI:
    """The LightningCLI behind ``geozoo fit|validate|test|predict`` (``args`` as on the command
    line, ``None`` for ``sys.argv``; ``run=False`` only parses and instantiates)."""
    return GeozooCLI(
        L.LightningModule,
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        seed_everything_default=0,
        save_config_kwargs={"overwrite": True},
        parser_class=_ArgumentParser,
        parser_kwargs={"prog": "geozoo", "description": DESCRIPTION},
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
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:  # as `python -m` does
        sys.path.insert(0, cwd)
    argv = list(sys.argv[1:] if args is None else args)
    if argv and argv[0] == "zoo":
        code = zoo_main(argv[1:])
        if args is None:
            sys.exit(code)
        return code
    build_cli(None if args is None else argv)  # None: LightningCLI reads sys.argv itself
    return 0


if __name__ == "__main__":
    main()
