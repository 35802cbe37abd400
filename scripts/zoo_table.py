"""Print the README's zoo table (markdown) from every models/*/config.json.

Each entry shows its published checkpoint's held-out accuracies and, for entries trained with
several seeds, the mean ± std over the seeds as recorded on the card.

python scripts/zoo_table.py                      # print it
python scripts/zoo_table.py --write README.md    # replace the table between the zoo-table markers
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from geozoo.zoo.cards import replace_marked_block
from geozoo.zoo.hub import models_dir

BEGIN, END = "<!-- zoo-table:begin -->", "<!-- zoo-table:end -->"


def metrics_cell(config: dict[str, Any]) -> str:
    """``clean 96.4, ...`` for the published seed, then ``(3 seeds: 96.63 ± 0.49, ...)``."""
    accuracies = [key for key in config.get("metrics", {}) if key.endswith("/acc")]
    cell = ", ".join(f"{key.split('/')[0]} {config['metrics'][key]}" for key in accuracies)
    seeds = config.get("seeds")
    if seeds and len(seeds["seeds"]) > 1:
        # every accuracy's spread, or none: a partial list would not line up with the names
        if all(key in seeds["mean"] and key in seeds["std"] for key in accuracies):
            spread = ", ".join(
                f"{seeds['mean'][key]:.2f} ± {seeds['std'][key]:.2f}" for key in accuracies
            )
            cell += f" ({len(seeds['seeds'])} seeds: {spread})"
    return cell


def table() -> str:
    rows = ["| model | params | held-out metrics (accuracy %) | recipe |", "|---|---:|---|---|"]
    for config_path in sorted(models_dir().glob("*/config.json")):
        config = json.loads(config_path.read_text())
        name = config["name"]
        rows.append(
            f"| [`{name}`](models/{name}/README.md) | {config['weights']['num_params']:,} | "
            f"{metrics_cell(config)} | `{config.get('recipe', '')}` |"
        )
    return "\n".join(rows)


def write(path: Path, text: str) -> None:
    replace_marked_block(path, BEGIN, END, text)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", type=Path, metavar="FILE", help="replace the marked table")
    args = parser.parse_args(argv)
    text = table()
    if args.write:
        write(args.write, text)
    print(text)


if __name__ == "__main__":
    main()
