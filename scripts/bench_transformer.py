"""Size, FLOPs and inference throughput of the minimal symmetric-attention transformer against
the full ViT, as ratios ``minimal / full`` in one run.

    python scripts/bench_transformer.py [--batch-sizes 1 32 256] [--rounds 7] [--threads 1]

Both zoo entries (``vit_tiny_mnist`` and ``symformer_min_mnist``; their published weights when
present, otherwise freshly initialised, which runs at the same speed) classify the same random
28x28 images in eval mode under ``torch.inference_mode``. FLOPs per image are counted by
``torch.utils.flop_counter.FlopCounterMode`` (matrix products and convolutions, two FLOPs per
multiply-add; layer norms, softmax and element-wise work are not counted). The two models are
timed in alternating rounds and the median round is reported, so that load from other processes
on the machine hits both alike; the ratios are the numbers to compare across machines.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from geozoo.zoo import create_model
from geozoo.zoo.hub import has_checkpoint

BASELINE, MINIMAL = "vit_tiny_mnist", "symformer_min_mnist"


def load(name: str) -> tuple[nn.Module, str]:
    if has_checkpoint(name):
        return create_model(name, pretrained=True), "published weights"
    return create_model(name).eval(), "random init (no checkpoint)"


@torch.inference_mode()
def flops_per_image(model: nn.Module) -> int:
    """FLOPs of one forward pass on one 28x28 image (matrix products and convolutions)."""
    with FlopCounterMode(display=False) as counter:
        model(torch.rand(1, 1, 28, 28))
    return counter.get_total_flops()


@torch.inference_mode()
def time_round(model: nn.Module, images: torch.Tensor, min_seconds: float) -> float:
    """Images per second over repeated forward passes lasting at least ``min_seconds``."""
    count, start = 0, time.perf_counter()
    while True:
        model(images)
        count += len(images)
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return count / elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 32, 256])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--min-seconds", type=float, default=0.3, help="per model and round")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    models = {name: load(name) for name in (BASELINE, MINIMAL)}
    sizes = {}
    for name, (model, origin) in models.items():
        sizes[name] = (sum(p.numel() for p in model.parameters()), flops_per_image(model))
        print(f"{name}: {origin}")
    print(f"\n{'':>14} {BASELINE:>22} {MINIMAL:>26} {'ratio min/full':>15}")
    for i, what in enumerate(("parameters", "FLOPs / image")):
        full, minimal = sizes[BASELINE][i], sizes[MINIMAL][i]
        print(f"{what:>14} {full:>22,} {minimal:>26,} {minimal / full:>15.2f}")
    print(f"\nimages/s, {torch.get_num_threads()} thread(s), median of {args.rounds} rounds")
    print(f"{'batch':>6} {BASELINE + ' img/s':>22} {MINIMAL + ' img/s':>26} {'ratio min/full':>15}")
    for batch in args.batch_sizes:
        images = torch.rand(batch, 1, 28, 28, generator=torch.Generator().manual_seed(batch))
        rates: dict[str, list[float]] = {name: [] for name in models}
        for model, _ in models.values():  # warm-up
            time_round(model, images, 0.05)
        for _ in range(args.rounds):
            for name, (model, _) in models.items():
                rates[name].append(time_round(model, images, args.min_seconds))
        full, minimal = (statistics.median(rates[name]) for name in (BASELINE, MINIMAL))
        print(f"{batch:>6} {full:>22.0f} {minimal:>26.0f} {minimal / full:>15.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
