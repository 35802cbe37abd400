"""Print the grid of synthetic faces shown in docs/symface.md (PNG).

    python scripts/plot_synthetic_faces.py [--out docs/symface_synthetic_faces.png]

Rows are identities (from ``geozoo.data.synthetic_faces.sample_identities``, seed 0); the first
column renders each one frontal, front-lit and neutral, the others under the random yaw, light,
expression, misalignment and noise of ``SyntheticFacesDataModule``'s training images; the last
two columns are the left half and the mirrored right half (``split_face``) of the frontal face.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from geozoo.data.synthetic_faces import FaceRendering, render_faces, sample_identities
from geozoo.objectives.symface import split_face


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("docs/symface_synthetic_faces.png"))
    parser.add_argument("--identities", type=int, default=6)
    parser.add_argument("--images", type=int, default=7)
    parser.add_argument("--size", type=int, default=32)
    args = parser.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    generator = torch.Generator().manual_seed(0)
    identities = sample_identities(args.identities, generator)
    frontal, _ = render_faces(identities, FaceRendering.neutral(len(identities)), args.size)
    repeated = identities.repeat_interleave(args.images, dim=0)
    varied, _ = render_faces(
        repeated, FaceRendering.sample(len(repeated), generator), args.size, generator=generator
    )
    varied = varied.view(args.identities, args.images, *varied.shape[1:])
    left, right = split_face(frontal)
    columns = args.images + 3
    figure, axes = plt.subplots(
        args.identities, columns, figsize=(columns * 0.9, args.identities * 0.95)
    )
    for row in range(args.identities):
        panels = [frontal[row], *varied[row], left[row], right[row]]
        for column, image in enumerate(panels):
            axis = axes[row, column]
            axis.imshow(image.permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
            axis.set_xticks([])
            axis.set_yticks([])
    titles = {0: "frontal", 1: "random", columns - 2: "left", columns - 1: "right (mirr.)"}
    for column, title in titles.items():
        axes[0, column].set_title(title, fontsize=7)
    figure.suptitle("geozoo SyntheticFaces (procedural, not real people)", fontsize=9)
    figure.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
