"""The Lightning CLI that ``geozoo fit|validate|test|predict`` and the zoo's training share:
LightningCLI with a parser that puts the cause of an unimportable ``class_path`` first, and a
:class:`geozoo.callbacks.PredictionWriter` on ``predict``. Configured in one place,
:func:`geozoo.zoo.recipes.lightning_cli`."""

from __future__ import annotations

import difflib
import importlib
import os
import re
import sys
from typing import NoReturn
from unittest import mock

from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI

from geozoo.callbacks import PredictionWriter

__all__ = ["DESCRIPTION", "GeozooArgumentParser", "GeozooCLI", "import_failure_hint"]

DESCRIPTION = (
    "Train, evaluate and predict: geozoo fit|validate|test|predict --config FILE (options "
    "below; predict writes predictions.csv). Manage the model zoo: geozoo zoo list|show|eval|"
    "train|export (see geozoo zoo --help)."
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


class GeozooArgumentParser(LightningArgumentParser):
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

    def parse_arguments(self, parser: LightningArgumentParser, args: ArgsType) -> None:
        # geozoo always passes the whole argument list it means (the console script's command
        # line with recipe names resolved, or a recipe trained in-process), never a mix with
        # sys.argv, so Lightning's warning about giving both would only ever be noise
        with mock.patch.object(sys, "argv", sys.argv[:1]):
            super().parse_arguments(parser, args)

    def before_predict(self) -> None:
        if not any(isinstance(c, BasePredictionWriter) for c in self.trainer.callbacks):
            self.trainer.callbacks.append(PredictionWriter())
