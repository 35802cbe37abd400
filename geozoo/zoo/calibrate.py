"""Temperature scaling of a published classifier, folded into its weights.

Publishing fits one temperature on the recipe's validation data (never a test set) with
:func:`geozoo.metrics.fit_temperature` and divides the weight and bias of the layer that computes
the logits by it. The shipped network then outputs calibrated logits with nothing extra to load
or apply, and every prediction is what it was (a positive scaling keeps the argmax).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from geozoo.metrics.calibration import expected_calibration_error, fit_temperature

__all__ = ["TEMPERATURE_BOUNDS", "fold_temperature", "fold_temperature_fitted_on"]

#: The range searched for a published temperature; an optimum at either end means the
#: validation data cannot calibrate the network (e.g. it has no errors), and publishing refuses.
TEMPERATURE_BOUNDS = (0.01, 100.0)


@torch.no_grad()
def fold_temperature(network: nn.Module, layer: str, temperature: float) -> None:
    """Divide the weight and bias of ``network``'s submodule ``layer`` (an ``nn.Linear`` whose
    output is the logits) by ``temperature``, in place."""
    if not temperature > 0:
        raise ValueError(f"expected a positive temperature, got {temperature!r}")
    try:
        linear = network.get_submodule(layer)
    except AttributeError as error:
        raise ValueError(
            f"{type(network).__name__} has no submodule {layer!r} to fold a temperature into"
        ) from error
    if not isinstance(linear, nn.Linear):
        raise TypeError(
            f"the temperature is folded into an nn.Linear that computes the logits; "
            f"{type(network).__name__}.{layer} is a {type(linear).__name__}"
        )
    linear.weight.div_(temperature)
    if linear.bias is not None:
        linear.bias.div_(temperature)


@torch.no_grad()
def _logits(network: nn.Module, batches: Iterable[Any]) -> tuple[torch.Tensor, torch.Tensor]:
    outputs, labels = [], []
    for inputs, targets in batches:
        outputs.append(network(inputs).double())
        labels.append(targets)
    if not outputs:
        raise ValueError("the validation loader is empty: no data to fit a temperature on")
    return torch.cat(outputs), torch.cat(labels)


def _summary(logits: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    return {
        "nll": round(float(F.cross_entropy(logits, targets)), 4),
        "ece": round(100 * expected_calibration_error(logits, targets, from_logits=True), 2),
    }


def fold_temperature_fitted_on(
    network: nn.Module, layer: str, validation: Iterable[Any]
) -> dict[str, Any]:
    """Fit a temperature on ``validation`` batches ``(inputs, labels)`` of ``network`` (in eval
    mode) and fold it into ``layer`` (:func:`fold_temperature`). Refuses a temperature at the
    edge of :data:`TEMPERATURE_BOUNDS` and a layer whose scaling does not scale the outputs (the
    network is then left as it was).

    Returns:
        JSON-ready facts for the card: the temperature, the number of samples it was fitted on,
        and the validation NLL and ECE (percent, 15 bins) before and after.
    """
    was_training = network.training
    network.eval()
    try:
        logits, targets = _logits(network, validation)
        temperature = fit_temperature(logits, targets, bounds=TEMPERATURE_BOUNDS)
        if temperature in TEMPERATURE_BOUNDS:
            errors = int((logits.argmax(-1) != targets).sum())
            raise ValueError(
                f"the likelihood-optimal temperature lies at the edge of the searched range "
                f"{TEMPERATURE_BOUNDS} (T = {temperature:g}; {errors} of {len(targets):,} "
                "validation samples misclassified), so these samples cannot calibrate the "
                "network (at the lower edge: no errors to calibrate on). Give the recipe more "
                "validation data, or declare no temperature_layer for this entry"
            )
        original = {k: v.clone() for k, v in network.get_submodule(layer).state_dict().items()}
        fold_temperature(network, layer, temperature)
        # one batch shows whether the layer's scaling scales the outputs; the rest is arithmetic
        first, _ = _logits(network, [next(iter(validation))])
        expected = logits[: len(first)] / temperature
        if not torch.allclose(first, expected, rtol=1e-4, atol=1e-4):
            network.get_submodule(layer).load_state_dict(original)
            gap = float((first - expected).abs().max())
            raise RuntimeError(
                f"{type(network).__name__}.{layer} does not compute the logits directly: dividing "
                f"its weights by the temperature {temperature:.4g} did not divide the outputs by "
                f"it (largest difference {gap:.3g}); the layer was restored"
            )
    finally:
        network.train(was_training)
    return {
        "temperature": round(temperature, 4),
        "layer": layer,
        "fitted_on": f"{len(targets):,} validation samples",
        "validation_before": _summary(logits, targets),
        "validation_after": _summary(logits / temperature, targets),
    }
