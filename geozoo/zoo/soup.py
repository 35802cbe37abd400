"""Weight-space model soups: the average of several models with one architecture.

SALSA (Chegini et al. 2024, "SALSA: soup-based alignment learning for stronger adaptation in
RLHF", arXiv 2411.01798) replaces the reference policy of the KL penalty
``r(x, y) - beta log(pi_theta / pi_ref)`` by the soup ``theta_soup = sum_k alpha_k theta_k``
of independently fine-tuned models (the paper's main setting: two SFT models,
``alpha = (1/2, 1/2)``), which it reports to lie in a better region and allow a larger
deviation.  The soup here is generic: any models with the same
architecture (same class, same state-dict keys, shapes and dtypes), given as modules, state
dicts or zoo names; the result is an ordinary module, usable as the reference or teacher of any
divergence term.  Averaging only makes sense for models fine-tuned from a shared ancestor
(Wortsman et al. 2022, "Model soups"); that cannot be checked from the weights and is the
caller's responsibility.

* :func:`soup_state_dict`: the weighted average of state dicts.
* :func:`model_soup`: a new module holding the average (frozen by default).
* :class:`ModelSoup`: the same as an ``nn.Module`` built from YAML
  (``reference: {class_path: geozoo.zoo.soup.ModelSoup, init_args: {models: [a, b]}}``).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["ModelSoup", "model_soup", "soup_state_dict"]

ModelSpec = nn.Module | str | Mapping[str, Tensor]


def _soup_weights(weights: Sequence[float] | None, count: int) -> list[float]:
    if count < 1:
        raise ValueError("a soup needs at least one model, got none")
    if weights is None:
        return [1.0 / count] * count
    weights = [float(w) for w in weights]
    if len(weights) != count:
        raise ValueError(f"got {len(weights)} soup weights for {count} models; give one per model")
    if any(not w >= 0 or w == float("inf") for w in weights) or sum(weights) <= 0:
        raise ValueError(
            f"soup weights must be finite, non-negative and not all zero, got {weights}"
        )
    total = sum(weights)
    return [w / total for w in weights]


def soup_state_dict(
    state_dicts: Sequence[Mapping[str, Tensor]], weights: Sequence[float] | None = None
) -> dict[str, Tensor]:
    """``sum_k alpha_k theta_k`` entry by entry, ``alpha`` = ``weights`` normalised to sum 1.

    Floating-point entries are averaged in float64 and cast back to their dtype.  Other entries
    (integer buffers such as BatchNorm's ``num_batches_tracked``) are counters, not weights:
    they are taken from the first state dict.

    Raises:
        ValueError: if the state dicts differ in keys, shapes or dtypes (not one architecture).
    """
    alphas = _soup_weights(weights, len(state_dicts))
    first = state_dicts[0]
    for index, other in enumerate(state_dicts[1:], start=1):
        missing, extra = sorted(set(first) - set(other)), sorted(set(other) - set(first))
        if missing or extra:
            raise ValueError(
                f"model 0 and model {index} have different architectures: entries only in "
                f"model 0: {missing[:5]}, only in model {index}: {extra[:5]}"
            )
        for key, value in first.items():
            if other[key].shape != value.shape or other[key].dtype != value.dtype:
                raise ValueError(
                    f"model 0 and model {index} have different architectures: {key!r} is "
                    f"{tuple(value.shape)} {value.dtype} in model 0 but "
                    f"{tuple(other[key].shape)} {other[key].dtype} in model {index}"
                )
    out: dict[str, Tensor] = {}
    for key, value in first.items():
        if not torch.is_floating_point(value):
            out[key] = value.detach().clone()
            continue
        total = torch.zeros(value.shape, dtype=torch.float64, device=value.device)
        for alpha, sd in zip(alphas, state_dicts, strict=True):
            total += alpha * sd[key].detach().to(value.device, torch.float64)
        out[key] = total.to(value.dtype)
    return out


def _as_module(spec: ModelSpec, index: int) -> nn.Module | Mapping[str, Tensor]:
    if isinstance(spec, nn.Module | Mapping):
        return spec
    if isinstance(spec, str):
        from geozoo.zoo.factory import create_model

        return create_model(spec, pretrained=True)
    raise TypeError(
        f"soup ingredient {index} must be an nn.Module, a state dict or a zoo model name, got "
        f"{type(spec).__name__}"
    )


def model_soup(
    models: Sequence[ModelSpec],
    weights: Sequence[float] | None = None,
    frozen: bool = True,
) -> nn.Module:
    """A new module whose weights are the (weighted) average of ``models``.

    Args:
        models: at least one model: modules, zoo names (loaded with their published weights) or
            state dicts; at least one must be a module (it gives the architecture).  Modules
            must all be of the same class.
        weights: the mixing weights ``alpha_k`` (non-negative; normalised to sum 1); default
            uniform, the paper's ``1/2, 1/2`` for two models.
        frozen: put the soup in eval mode with ``requires_grad=False``, as a reference policy
            is; ``False`` gives a trainable copy (e.g. to initialise the policy from the soup).

    Raises:
        ValueError: on different classes, keys, shapes or dtypes, naming the first mismatch.
    """
    if isinstance(models, nn.Module | str | Mapping) or not isinstance(models, Sequence):
        raise TypeError(
            f"models must be a list of models, got {type(models).__name__}; "
            "wrap a single model in a list"
        )
    loaded = [_as_module(spec, i) for i, spec in enumerate(models)]
    modules = [m for m in loaded if isinstance(m, nn.Module)]
    if not modules:
        raise ValueError(
            "give at least one model as a module or zoo name: state dicts alone "
            "do not say which architecture to build"
        )
    kinds = sorted({type(m).__qualname__ for m in modules})
    if len(kinds) > 1:
        raise ValueError(
            f"models have different architectures (classes {kinds}); a soup "
            "averages models of one architecture"
        )
    state_dicts = [m.state_dict() if isinstance(m, nn.Module) else m for m in loaded]
    averaged = soup_state_dict(state_dicts, weights)
    soup = copy.deepcopy(modules[0])
    soup.load_state_dict(averaged)
    if frozen:
        soup.eval()
        soup.requires_grad_(False)
    return soup


class ModelSoup(nn.Module):
    """:func:`model_soup` as a module, for YAML: ``forward`` is the soup's forward and other
    attributes (e.g. a policy's ``log_probs`` and ``sample``) are the soup's.

    Args:
        models, weights, frozen: as in :func:`model_soup`.
    """

    def __init__(
        self,
        models: Sequence[ModelSpec],
        weights: Sequence[float] | None = None,
        frozen: bool = True,
    ) -> None:
        super().__init__()
        self.module = model_soup(models, weights, frozen=frozen)
        self.frozen = frozen

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.module(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "module":
                raise
            return getattr(self.module, name)

    def train(self, mode: bool = True) -> ModelSoup:
        super().train(mode)
        if self.frozen:
            self.module.eval()
        return self
