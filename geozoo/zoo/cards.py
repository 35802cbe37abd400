"""Model cards: the README.md of a checkpoint folder, rendered from its config.json.

Units: accuracies and calibration errors are in percent everywhere in the zoo (cards,
``geozoo zoo eval``, docs). Cards carry no timings: speed depends on the machine and its load;
``scripts/bench_*.py`` measure it against a baseline in the same run.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["mean_std", "render_model_card", "replace_marked_block"]


def replace_marked_block(path: str | Path, begin: str, end: str, text: str) -> None:
    """Replace what lies between the marker lines ``begin`` and the next ``end`` of the markdown
    file ``path`` with ``text`` (how the scripts write their tables into the README and docs)."""
    path = Path(path)
    doc = path.read_text()
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if not pattern.search(doc):
        raise ValueError(f"{path} has no {begin} ... {end} block to replace")
    path.write_text(pattern.sub(lambda _: f"{begin}\n{text}\n{end}", doc, count=1))


def mean_std(values: Sequence[float], digits: int = 1) -> str:
    """``"mean ± std"`` over seeds (std with n - 1 in the denominator), or the value alone for
    one seed: the cell format of the reproduce scripts' tables."""
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def _table(rows: list[tuple[str, str]]) -> str:
    lines = ["| | |", "|---|---|"] + [f"| {key} | {value} |" for key, value in rows]
    return "\n".join(lines)


def _seeds(summary: dict[str, Any]) -> list[str]:
    seeds = summary["seeds"]
    keys = list(summary["mean"])
    header = "| metric | mean ± std | " + " | ".join(f"seed {s}" for s in seeds) + " |"
    rows = [
        f"| {k} | {summary['mean'][k]} ± {summary['std'][k]} | "
        + " | ".join(str(summary["per_seed"][str(s)][k]) for s in seeds)
        + " |"
        for k in keys
    ]
    return [
        f"## Seeds ({len(seeds)} runs)",
        "\n".join([header, "|---|---|" + "---|" * len(seeds), *rows]),
        f"Published: seed {summary['published_seed']}, the {summary['rule']} "
        f"(`{summary['primary_metric']}`); std over seeds with n - 1 in the denominator.",
    ]


def _calibration(scaling: dict[str, Any]) -> list[str]:
    before, after = scaling["validation_before"], scaling["validation_after"]
    return [
        "## Calibration",
        f"The logits are divided by the temperature T = {scaling['temperature']}, fitted by "
        f"likelihood on {scaling['fitted_on']} (temperature scaling, Guo et al. 2017) and folded "
        f"into `{scaling['layer']}`; predictions are those of the trained network. On those "
        f"samples the NLL went from {before['nll']} to {after['nll']} and the ECE from "
        f"{before['ece']}% to {after['ece']}%.",
    ]


def render_model_card(config: dict[str, Any]) -> str:
    """Markdown card listing the architecture, input spec, metrics and the commands behind them."""
    name = config["name"]
    spec = config["input"]
    weights = config["weights"]
    metric_rows = [(key, f"{value}") for key, value in config.get("metrics", {}).items()]
    measured = config.get("measurements", {})
    measurement_rows = [(k, f"{v}") for k, v in measured.items() if k not in ("command", "note")]
    usage = [
        "import geozoo",
        f'model = geozoo.create_model("{name}", pretrained=True)  # sha256-checked',
        f"outputs = model(inputs)  # {spec['dtype']} in [{spec['value_range'][0]}, "
        f"{spec['value_range'][1]}], shape (N, {', '.join(map(str, spec['input_size']))})",
    ]
    files = [("weights", f"`{weights['file']}` ({weights['bytes']:,} bytes)")]
    files.append(("sha256", f"`{weights['sha256']}`"))
    for form, info in config.get("forms", {}).items():
        arguments = ", ".join(f"{k}={v!r}" for k, v in info["arguments"].items())
        usage.append(
            f'{form} = geozoo.create_model("{name}", pretrained=True, {arguments})'
            f"  # {info.get('description', form)}"
        )
        files.append((f"{form} form", f"`{info['file']}` ({info['bytes']:,} bytes)"))
        files.append((f"{form} sha256", f"`{info['sha256']}`"))
    sections = [
        f"# {name}",
        " ".join(config.get("description", "").split()),  # docstrings wrap and indent
        "## Use",
        "```python\n" + "\n".join(usage) + "\n```",
        "## Checkpoint",
        _table(
            [
                ("architecture", f"`{config['architecture']}` {config.get('arguments', {})}"),
                ("parameters", f"{weights['num_params']:,}"),
                *files,
                ("recipe", f"`{config.get('recipe', '')}`"),
                ("data", config.get("data", {}).get("description", "")),
            ]
        ),
        "## Metrics (held-out test sets; accuracy and calibration error in %)",
        _table(metric_rows),
        f"Recompute with `{config.get('metrics_command', '')}`.",
    ]
    if "seeds" in config:
        sections += _seeds(config["seeds"])
    if "temperature_scaling" in config.get("export", {}):
        sections += _calibration(config["export"]["temperature_scaling"])
    if measurement_rows:
        sections += ["## Measurements", _table(measurement_rows), measured.get("note", "")]
    if config.get("comparison"):
        sections += ["## Comparison", config["comparison"]]
    notes = config.get("notes")
    if notes:
        sections += ["## Notes", notes]
    sections += ["## Reproduce", f"```\n{config.get('train_command', '')}\n```"]
    return "\n\n".join(s for s in sections if s) + "\n"
