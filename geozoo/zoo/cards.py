"""Model cards: the README.md of a checkpoint folder, rendered from its config.json."""

from __future__ import annotations

from typing import Any

__all__ = ["render_model_card"]


def _table(rows: list[tuple[str, str]]) -> str:
    lines = ["| | |", "|---|---|"] + [f"| {key} | {value} |" for key, value in rows]
    return "\n".join(lines)


def render_model_card(config: dict[str, Any]) -> str:
    """Markdown card listing the architecture, input spec, metrics and the commands behind them."""
    name = config["name"]
    spec = config["input"]
    weights = config["weights"]
    metric_rows = [(key, f"{value}") for key, value in config.get("metrics", {}).items()]
    measured = config.get("measurements", {})
    measurement_rows = [(k, f"{v}") for k, v in measured.items() if k not in ("command", "note")]
    sections = [
        f"# {name}",
        config.get("description", ""),
        "## Use",
        "```python\nimport geozoo\n"
        f'model = geozoo.create_model("{name}", pretrained=True)  # sha256-checked\n'
        f"logits = model(images)  # float in [{spec['value_range'][0]}, {spec['value_range'][1]}],"
        f" shape (N, {', '.join(map(str, spec['input_size']))})\n```",
        "## Checkpoint",
        _table(
            [
                ("architecture", f"`{config['architecture']}` {config.get('arguments', {})}"),
                ("parameters", f"{weights['num_params']:,}"),
                ("weights", f"`{weights['file']}` ({weights['bytes']:,} bytes)"),
                ("sha256", f"`{weights['sha256']}`"),
                ("recipe", f"`{config.get('recipe', '')}`"),
                ("data", config.get("data", {}).get("description", "")),
            ]
        ),
        "## Metrics (held-out test digits; accuracy in %, ECE in [0, 1])",
        _table(metric_rows),
        f"Recompute with `{config.get('metrics_command', '')}`.",
    ]
    if measurement_rows:
        sections += [
            "## Measurements on the training machine",
            _table(measurement_rows),
            measured.get("note", ""),
        ]
    notes = config.get("notes")
    if notes:
        sections += ["## Notes", notes]
    sections += ["## Reproduce", f"```\n{config.get('train_command', '')}\n```"]
    return "\n\n".join(s for s in sections if s) + "\n"
