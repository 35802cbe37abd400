"""Retrain a zoo entry from configs/NAME.yaml and rewrite models/NAME/.

    python scripts/train_zoo.py cnn_mnist [--output-dir DIR] [-- extra `geozoo fit` args]

Equivalent to `geozoo zoo train NAME`: trains through the Lightning CLI, checks that the
registered builder rebuilds the network with identical logits, evaluates the held-out test sets
and writes config.json (metrics, sha256, commands), model.safetensors and the README.md card.
"""

from __future__ import annotations

import argparse
import sys

from geozoo.zoo.publish import publish_entry


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("name", help="registered model name with a recipe configs/NAME.yaml")
    parser.add_argument("--output-dir", default=None, help="default: models/NAME")
    ns, fit_args = parser.parse_known_args(argv)  # anything else goes to `geozoo fit`
    fit_args = [a for a in fit_args if a != "--"]
    written = publish_entry(ns.name, output_dir=ns.output_dir, cli_args=fit_args)
    print(f"\n{ns.name}: wrote {ns.output_dir or 'models/' + ns.name}")
    for key, value in {**written["metrics"], **written.get("measurements", {})}.items():
        if key != "note":
            print(f"  {key:<22} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
