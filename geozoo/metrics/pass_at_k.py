"""pass@k: the probability that at least one of k samples is correct (Chen et al. 2021,
"Evaluating large language models trained on code", Eq. 1), estimated without bias from
``n >= k`` samples of which ``c`` are correct:

    pass@k = 1 - C(n - c, k) / C(n, k).

The ratio of binomials is evaluated as a product of ``c`` factors ``1 - k / i`` in log space
(``log1p``, float64) and ``1 - exp(x)`` as ``-expm1(x)``, so it is accurate for large ``n``
where the binomials overflow.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torchmetrics import Metric

__all__ = ["PassAtK", "pass_at_k"]


def pass_at_k(n: int | Tensor, c: int | Tensor, k: int) -> Tensor:
    """Unbiased pass@k from ``n`` samples with ``c`` correct (elementwise over tensors).

    Args:
        n: samples drawn per problem (``n >= k``).
        c: correct samples per problem (``0 <= c <= n``).
        k: the budget.

    Returns:
        float64 tensor of the broadcast shape of ``n`` and ``c``.
    """
    n_t = torch.as_tensor(n, dtype=torch.float64)
    c_t = torch.as_tensor(c, dtype=torch.float64)
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if bool((n_t < k).any()):
        raise ValueError(f"pass@{k} needs n >= k samples per problem, got n={n}")
    if bool((c_t < 0).any() | (c_t > n_t).any()):
        raise ValueError(f"c must lie in [0, n], got c={c} with n={n}")
    always = n_t - c_t < k  # every k-subset holds a correct sample
    # C(n - c, k) / C(n, k) = prod_{i = n - c + 1}^{n} (1 - k / i): c factors, summed in log
    # space with log1p (Chen et al. 2021, Fig. 3), exact to rounding for any n
    j = torch.arange(int(c_t.max().item()) if c_t.numel() else 0, dtype=torch.float64)
    n_b, c_b, always_b = torch.broadcast_tensors(n_t, c_t, always)
    i = n_b[..., None] - j
    use = (j < c_b[..., None]) & ~always_b[..., None]
    terms = torch.log1p(-k / torch.where(use, i, torch.full_like(i, math.inf)))
    log_ratio = terms.sum(-1)
    return torch.where(always_b, torch.ones_like(log_ratio), -torch.expm1(log_ratio))


class PassAtK(Metric):
    """Mean unbiased pass@k over problems.

    ``update(correct)`` takes a ``(problems, n)`` bool (or 0/1) tensor of which of ``n``
    samples per problem were correct; ``compute()`` returns the mean pass@k over every problem
    seen (float32).

    Args:
        k: the budget (each update needs ``n >= k``).
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, k: int = 1, **kwargs) -> None:
        super().__init__(**kwargs)
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        self.k = k
        self.add_state("total", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, correct: Tensor) -> None:
        if correct.ndim != 2:
            raise ValueError(
                f"expected correct of shape (problems, n samples), got {tuple(correct.shape)}"
            )
        n = correct.shape[1]
        c = correct.to(torch.float64).sum(-1)
        values = pass_at_k(torch.full_like(c, n), c, self.k)
        self.total += values.sum().to(self.total.device)
        self.count += float(len(values))

    def compute(self) -> Tensor:
        return (self.total / self.count.clamp_min(1)).float()
