"""Print the README's zoo table (markdown) from every models/*/config.json.

python scripts/zoo_table.py
"""

from __future__ import annotations

import json

from geozoo.zoo.hub import models_dir


def main() -> None:
    print("| model | params | held-out metrics (accuracy %) | recipe |")
    print("|---|---:|---|---|")
    for config_path in sorted(models_dir().glob("*/config.json")):
        config = json.loads(config_path.read_text())
        metrics = ", ".join(
            f"{key.split('/')[0]} {value}"
            for key, value in config.get("metrics", {}).items()
            if key.endswith("/acc")
        )
        name = config["name"]
        print(
            f"| [`{name}`](models/{name}/README.md) | {config['weights']['num_params']:,} | "
            f"{metrics} | `{config.get('recipe', '')}` |"
        )


if __name__ == "__main__":
    main()
