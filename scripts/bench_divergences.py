"""Benchmarks for ``geozoo.objectives.divergences`` and ``geozoo.objectives.optimal_transport``.

Prints, in one run (ratios against baselines measured in the same run, so machine load cancels):

1. ``sinkhorn`` against POT's log-domain Sinkhorn on the same inputs (batch 256, 100 classes,
   epsilon 0.1 and 0.01): the relative difference of the transport costs and the speed-up over
   POT's per-problem ``ot.sinkhorn2(method="sinkhorn_log")`` loop and over POT's batched
   ``ot.solve_batch(method="log_sinkhorn")``; then epsilon = 1e-3, where plain (kernel-domain)
   Sinkhorn underflows.
2. Every categorical divergence, forward + backward on a (4096, 1000) batch, as a multiple of
   ``torch.nn.functional.kl_div`` (with its two ``log_softmax``) on the same batch.

Usage: ``python scripts/bench_divergences.py [--quick]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import numpy as np
import ot
import torch
import torch.nn.functional as F

from geozoo.objectives import divergences as D
from geozoo.objectives.optimal_transport import sinkhorn


def _timeit(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def bench_sinkhorn(batch: int, classes: int, repeats: int) -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.softmax(2 * torch.randn(batch, classes, generator=g, dtype=torch.float64), -1)
    b = torch.softmax(2 * torch.randn(batch, classes, generator=g, dtype=torch.float64), -1)
    x = torch.linspace(0, 1, classes, dtype=torch.float64)
    cost = (x[:, None] - x[None, :]).square()  # ground cost between classes, in [0, 1]
    tol, max_iter = 1e-9, 100_000
    print(f"sinkhorn: batch {batch}, {classes} classes, float64, squared-distance cost in [0, 1]")
    print(
        f"{'epsilon':>8} {'iters':>6} {'max rel diff':>13} {'x POT loop':>11} {'x POT batch':>12}"
    )
    for eps in (0.1, 0.01):
        ours = sinkhorn(a, b, cost, epsilon=eps, iters=max_iter, tol=tol)
        t_ours = _timeit(lambda eps=eps: sinkhorn(a, b, cost, eps, max_iter, tol), repeats)
        start = time.perf_counter()  # POT's per-problem log-domain solver, timed once
        pot_loop = np.array(
            [
                ot.sinkhorn2(
                    a[k].numpy(),
                    b[k].numpy(),
                    cost.numpy(),
                    eps,
                    method="sinkhorn_log",
                    numItermax=max_iter,
                    stopThr=tol,
                )
                for k in range(batch)
            ]
        )
        t_loop = time.perf_counter() - start
        rel = np.max(np.abs(ours.cost.numpy() - pot_loop) / np.abs(pot_loop))
        cost_b = cost.expand(batch, classes, classes).contiguous()
        start = time.perf_counter()  # POT's batched log-domain solver, timed once
        res_b = ot.solve_batch(
            cost_b,
            reg=eps,
            a=a,
            b=b,
            max_iter=max_iter,
            tol=tol,
            method="log_sinkhorn",
            grad="detach",
        )
        t_batch = time.perf_counter() - start
        rel_b = (res_b.value_linear - ours.cost).abs().div(ours.cost.abs()).max().item()
        print(
            f"{eps:>8g} {ours.iterations:>6d} {rel:>13.2e} {t_loop / t_ours:>10.1f}x "
            f"{t_batch / t_ours:>11.1f}x   (POT batched rel diff {rel_b:.1e})",
            flush=True,
        )
    eps = 1e-3
    ours = sinkhorn(a, b, cost, epsilon=eps, iters=1000, tol=None)  # logsumexp backend
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = np.array(
            [
                ot.sinkhorn2(a[k].numpy(), b[k].numpy(), cost.numpy(), eps, method="sinkhorn")
                for k in range(8)
            ]
        )
    print(
        f"epsilon 1e-3: geozoo finite on {int(torch.isfinite(ours.cost).sum())}/{batch} rows "
        f"(iterations {ours.iterations}, marginal error {ours.marginal_error:.1e}); "
        f"plain Sinkhorn (POT method='sinkhorn') finite on {int(np.isfinite(plain).sum())}/8 rows",
        flush=True,
    )


def bench_underflow(batch: int = 8, classes: int = 100) -> None:
    """A cost in [1, 2] at epsilon = 1e-3: exp(-C / epsilon) <= exp(-1000) is 0 in float64, so
    the kernel-domain iteration divides by zero, while the log domain is unaffected (adding a
    constant to the cost does not change the plan)."""
    g = torch.Generator().manual_seed(2)
    a = torch.softmax(2 * torch.randn(batch, classes, generator=g, dtype=torch.float64), -1)
    b = torch.softmax(2 * torch.randn(batch, classes, generator=g, dtype=torch.float64), -1)
    x = torch.linspace(0, 1, classes, dtype=torch.float64)
    cost = (x[:, None] - x[None, :]).square()
    eps = 1e-3
    shifted = sinkhorn(a, b, cost + 1.0, eps, 300, None, return_plan=True)
    base = sinkhorn(a, b, cost, eps, 300, None, return_plan=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = np.array(
            [
                ot.sinkhorn2(
                    a[k].numpy(), b[k].numpy(), (cost + 1.0).numpy(), eps, method="sinkhorn"
                )
                for k in range(batch)
            ]
        )
    same_plan = (shifted.plan - base.plan).abs().max().item()
    print(
        f"\ncost + 1 in [1, 2], epsilon 1e-3 ({batch} rows, 300 iterations): geozoo finite on "
        f"{int(torch.isfinite(shifted.cost).sum())}/{batch} rows, plan equal to the unshifted "
        f"cost's within {same_plan:.1e}, mean <P, C> {shifted.cost.mean().item():.4f}; plain "
        f"Sinkhorn (POT method='sinkhorn') returns {np.unique(plain).tolist()[:3]} (its kernel is "
        f"all zeros: {bool((torch.exp(-(cost + 1.0) / eps) == 0).all())})",
        flush=True,
    )


def bench_divergences(rows: int, classes: int, repeats: int) -> None:
    g = torch.Generator().manual_seed(1)
    p = 3 * torch.randn(rows, classes, generator=g)
    q = 3 * torch.randn(rows, classes, generator=g)

    def run(fn):
        def step():
            pp = p.clone().requires_grad_()
            qq = q.clone().requires_grad_()
            fn(pp, qq).backward()

        return step

    def baseline(pp, qq):
        return F.kl_div(
            F.log_softmax(qq, -1), F.log_softmax(pp, -1), log_target=True, reduction="batchmean"
        )

    fns = {name: D.get(name) for name in D.names() if name not in ("alpha", "renyi")}
    fns["alpha(0.5)"] = D.get("alpha", alpha=0.5)
    fns["alpha(2)"] = D.get("alpha", alpha=2.0)
    fns["renyi(0.5)"] = D.get("renyi", alpha=0.5)
    ratios: dict[str, list[float]] = {name: [] for name in fns}
    base_times = []
    for _ in range(repeats):  # interleave so that load changes hit every function alike
        t_base = _timeit(run(baseline), 1)
        base_times.append(t_base)
        for name, fn in fns.items():
            ratios[name].append(
                _timeit(run(lambda a, b, fn=fn: fn(a, b, reduction="mean")), 1) / t_base
            )
    print(
        f"\ndivergences: forward + backward on ({rows}, {classes}) float32, median of {repeats} "
        f"ratios to F.kl_div (median {statistics.median(base_times) * 1e3:.1f} ms)"
    )
    for name, values in ratios.items():
        print(f"  {name:<16} {statistics.median(values):5.2f}x", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    parser.add_argument(
        "--part", choices=("all", "sinkhorn", "underflow", "divergences"), default="all"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)  # POT runs on one thread too; threads only add contention noise
    if args.part in ("all", "sinkhorn"):
        bench_sinkhorn(32, 100, 1) if args.quick else bench_sinkhorn(256, 100, 2)
    if args.part in ("all", "underflow"):
        bench_underflow()
    if args.part in ("all", "divergences"):
        bench_divergences(512, 1000, 3) if args.quick else bench_divergences(4096, 1000, 5)


if __name__ == "__main__":
    main()
