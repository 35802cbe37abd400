"""Throughput of the steerable zoo entries next to the plain CNN baseline, in one run.

    python scripts/bench_steerable.py [--seconds 3] [--batch-size 32]

For each of steerable_c8_rotmnist and steerable_d4_rotmnist prints training images/s (escnn
form: the filters are re-expanded from the basis every step) and inference images/s of the escnn
form and of the exported plain-torch form, next to cnn_mnist measured in the same run at the
same 28x28 input, with ratios to it (so machine load cancels).  Also prints the time to build
each form (basis construction for the escnn form).
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from geozoo.zoo import card, create_model


def measure_throughput(
    model: torch.nn.Module,
    input_size: tuple[int, ...],
    batch_size: int = 32,
    train: bool = False,
    seconds: float = 3.0,
    warmup: int = 2,
) -> float:
    """Images per second of inference (``train=False``) or of one Adam training step with
    cross-entropy on random inputs; runs ``warmup`` untimed steps, then as many as fit in
    ``seconds`` (at least three)."""
    inputs = torch.rand(batch_size, *input_size)
    targets = torch.randint(0, 10, (batch_size,))
    if train:
        model = model.train()
        optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)

        def step() -> None:
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(inputs), targets).backward()
            optimizer.step()
    else:
        model = model.eval()

        def step() -> None:
            with torch.no_grad():
                model(inputs)

    for _ in range(warmup):
        step()
    count, start = 0, time.perf_counter()
    while count < 3 or time.perf_counter() - start < seconds:
        step()
        count += 1
    return batch_size * count / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--batch-size", type=int, default=32)
    ns = parser.parse_args(argv)
    torch.manual_seed(0)
    shape = (1, 28, 28)

    def bench(model: torch.nn.Module) -> tuple[float, float]:
        train = measure_throughput(model, shape, ns.batch_size, train=True, seconds=ns.seconds)
        infer = measure_throughput(model, shape, ns.batch_size, train=False, seconds=ns.seconds)
        return train, infer

    try:  # the published baseline's own widths, at the same 28x28 input
        baseline_args = dict(card("cnn_mnist").get("arguments", {}))
    except FileNotFoundError:
        baseline_args = {}
    baseline_args["input_size"] = (28, 28)
    base_train, base_infer = bench(create_model("cnn_mnist", **baseline_args))
    print(f"threads: {torch.get_num_threads()}, batch {ns.batch_size}, input {shape}")
    print(f"cnn_mnist arguments: {baseline_args}")
    header = (
        f"{'model':<34}{'build s':>9}{'train img/s':>13}{'x cnn':>7}{'infer img/s':>13}{'x cnn':>7}"
    )
    print(header)
    base = f"{base_train:>13.1f}{1.0:>7.2f}{base_infer:>13.1f}{1.0:>7.2f}"
    print(f"{'cnn_mnist (28x28)':<34}{'':>9}{base}")
    for name in ("steerable_c8_rotmnist", "steerable_d4_rotmnist"):
        start = time.perf_counter()
        escnn_form = create_model(name)
        build = time.perf_counter() - start
        train, infer = bench(escnn_form)
        print(
            f"{name + ' (escnn)':<34}{build:>9.2f}{train:>13.1f}{train / base_train:>7.2f}"
            f"{infer:>13.1f}{infer / base_infer:>7.2f}"
        )
        start = time.perf_counter()
        plain = create_model(name, exported=True)
        build = time.perf_counter() - start
        infer = measure_throughput(plain, shape, ns.batch_size, train=False, seconds=ns.seconds)
        print(
            f"{name + ' (exported)':<34}{build:>9.2f}{'-':>13}{'-':>7}"
            f"{infer:>13.1f}{infer / base_infer:>7.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
