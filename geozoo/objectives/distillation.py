"""Knowledge-distillation objectives: a teacher's outputs as (part of) the student's target.

All follow the objective protocol (:mod:`geozoo.objectives.base`): the student is the task's
network and its logits are ``ctx.outputs``; the teacher is a zoo name (loaded with
``geozoo.create_model(name, pretrained=True)``) or any ``nn.Module``.  A frozen teacher is kept
in eval mode with ``requires_grad=False`` and is *not* a registered submodule: it stays out of
the task's ``state_dict``, its optimizer and its ``train()``/``eval()`` switches, and follows the
student's device on the first call.  When the loop already has the teacher's logits (e.g.
precomputed for a fixed training set) it may pass them as ``ctx.extras["teacher_logits"]``
and the teacher is not run.

* :class:`Distillation`: Hinton et al. 2015 ("Distilling the knowledge in a neural network",
  Sec. 2) with any divergence of :mod:`geozoo.objectives.divergences`:
  ``T^2 * mean_i D(p_t,i || p_s,i)`` at temperature ``T`` (the per-row, "batchmean", average).
* :class:`PlackettLuceDistillation`: PLD (Bassam, Zhu and Bian 2025, "Plackett-Luce
  distillation", Eq. 6-8).
* :class:`BalancedDivergenceDistillation`: BD-KD (Amara et al. 2022, "BD-KD: balancing the
  divergences for online knowledge distillation"), online or with a frozen teacher.
* :class:`OFADistillation`: OFA-KD (Hao et al. 2023, "One-for-all: bridge the gap between
  heterogeneous architectures in knowledge distillation", Eq. 3-5), generic over student modules
  through forward hooks on named stages.
* :class:`SinkhornDistillation`: SinKD (Cui et al. 2024), see
  :func:`geozoo.objectives.optimal_transport.sinkd_loss`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from geozoo.objectives import divergences
from geozoo.objectives.base import Objective, ObjectiveOutput, StepContext, as_scalar
from geozoo.objectives.optimal_transport import sinkd_loss

__all__ = [
    "BalancedDivergenceDistillation",
    "Distillation",
    "OFADistillation",
    "PlackettLuceDistillation",
    "SinkhornDistillation",
    "load_teacher",
]

TeacherSpec = str | nn.Module


def load_teacher(
    teacher: TeacherSpec, weights: str | os.PathLike | None = None, pretrained: bool = True
) -> nn.Module:
    """A teacher module from a zoo name (with its published or given ``weights``) or a module."""
    if isinstance(teacher, nn.Module):
        if weights is not None:
            raise ValueError("teacher_weights is only used with a zoo name, not with a module")
        return teacher
    if isinstance(teacher, str):
        from geozoo.zoo import create_model

        if weights is not None:
            return create_model(teacher, weights=weights)
        return create_model(teacher, pretrained=pretrained)
    raise TypeError(
        f"teacher must be a zoo model name or an nn.Module, got {type(teacher).__name__}"
    )


def _check_temperature(temperature: float) -> float:
    if not (
        isinstance(temperature, int | float) and temperature > 0 and math.isfinite(temperature)
    ):
        raise ValueError(f"temperature must be a positive finite number, got {temperature!r}")
    return float(temperature)


def _agreement(student: Tensor, teacher: Tensor) -> Tensor:
    return (student.argmax(-1) == teacher.argmax(-1)).float().mean()


class _TeacherObjective(Objective):
    """Shared teacher handling: loading, freezing, device placement, shape checks."""

    def __init__(
        self,
        teacher: TeacherSpec,
        weight: float,
        name: str | None,
        teacher_weights: str | os.PathLike | None = None,
        frozen: bool = True,
        pretrained: bool = True,
    ) -> None:
        super().__init__(weight=weight, name=name)
        module = load_teacher(teacher, teacher_weights, pretrained=pretrained)
        self.frozen = frozen
        self.teacher_name = teacher if isinstance(teacher, str) else type(teacher).__name__
        if frozen:
            module.eval()
            for parameter in module.parameters():
                parameter.requires_grad_(False)
            # hidden from nn.Module registration: not in state_dict, optimizer or train()
            object.__setattr__(self, "_frozen_teacher", module)
        else:
            self.teacher = module  # trained with the student (online distillation)

    @property
    def teacher_module(self) -> nn.Module:
        return self._frozen_teacher if self.frozen else self.teacher

    def _place_teacher(self, device: torch.device) -> None:
        module = self.teacher_module
        reference = next(iter(module.parameters()), None)
        if reference is None:
            reference = next(iter(module.buffers()), None)
        if reference is not None and reference.device != device:
            module.to(device)

    def teacher_logits(self, ctx: StepContext) -> Tensor:
        """The teacher's logits on ``ctx.inputs`` (no gradient when frozen), as float32."""
        given = ctx.extras.get("teacher_logits") if ctx.extras else None
        if given is not None and self.frozen:
            logits = given.detach()
        else:
            self._place_teacher(ctx.outputs.device)
            if self.frozen:
                self.teacher_module.eval()
                with torch.no_grad():
                    logits = self.teacher_module(ctx.inputs)
            else:
                logits = self.teacher_module(ctx.inputs)
        if logits.shape != ctx.outputs.shape:
            raise ValueError(
                f"teacher {self.teacher_name!r} returned logits of shape {tuple(logits.shape)} "
                f"but the student's are {tuple(ctx.outputs.shape)}: they must match "
                "(same batch, same classes)"
            )
        return logits.float()

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, teacher={self.teacher_name!r}, frozen={self.frozen}"


class Distillation(_TeacherObjective):
    """Logit distillation with any divergence (Hinton et al. 2015, Sec. 2).

    ``loss = T^2 * mean_i D(softmax(t_i / T) || softmax(s_i / T))`` with the teacher ``t`` as
    ``P`` and the student ``s`` as ``Q``: ``divergence="kl"`` is the classic forward KL (mode
    covering), ``"reverse_kl"`` is ``KL(student || teacher)`` (mode seeking); every name of
    :func:`geozoo.objectives.divergences.names` works.  The mean is over rows after summing over
    classes ("batchmean"); the ``T^2`` factor keeps the gradient scale independent of ``T``.
    Add a :class:`~geozoo.objectives.CrossEntropy` objective for the hard-label term.

    Args:
        teacher: zoo model name (loaded pretrained and frozen) or a module.
        divergence: divergence name (``"kl"``, ``"js"``, ``"alpha"``, ...).
        temperature: softmax temperature ``T``.
        weight: factor applied by the task.
        divergence_params: extra parameters, e.g. ``{"alpha": 0.5}``.
        t2_scale: multiply by ``T^2``.
        teacher_weights: a local checkpoint folder or URL instead of the zoo's own weights.
        name: logging name (default ``"kd_<divergence>"``).
    """

    def __init__(
        self,
        teacher: TeacherSpec,
        divergence: str = "kl",
        temperature: float = 4.0,
        weight: float = 1.0,
        divergence_params: Mapping[str, float] | None = None,
        t2_scale: bool = True,
        teacher_weights: str | None = None,
        name: str | None = None,
    ) -> None:
        self.temperature = _check_temperature(temperature)
        self.divergence_name = divergence
        self.divergence_fn = divergences.get(divergence, **dict(divergence_params or {}))
        super().__init__(
            teacher, weight, name or f"kd_{divergence}", teacher_weights=teacher_weights
        )
        self.t2_scale = t2_scale

    def forward(self, ctx: StepContext) -> ObjectiveOutput:
        t = self.teacher_logits(ctx)
        s = ctx.outputs
        value = self.divergence_fn(t, s, temperature=self.temperature, reduction="mean")
        loss = value * self.temperature**2 if self.t2_scale else value
        return ObjectiveOutput(loss, {"agreement": _agreement(s.detach(), t)})


class PlackettLuceDistillation(_TeacherObjective):
    """Plackett-Luce distillation (PLD; Bassam, Zhu and Bian 2025, Eq. 6-8).

    The target ranking ``pi*`` puts the true class first and the other classes in descending
    teacher logit; the student's logits ``s`` score it with the Plackett-Luce likelihood, each
    rank ``k`` weighted by the teacher's confidence in the class there,
    ``alpha_k = softmax(t / tau)[pi*_k]``:

        L = mean_i sum_k alpha_k [ log sum_{l >= k} exp(s_{pi*_l}) - s_{pi*_k} ]

    The suffix log-sum-exps come from one reversed ``logcumsumexp``.  The first term is a
    cross-entropy weighted by the teacher's probability of the true class, so no separate CE
    objective is needed.  Convex in ``s`` and invariant to adding a constant to ``s``.

    Args:
        teacher: zoo model name or module (frozen).
        teacher_temperature: ``tau`` of the confidence weights (the paper's best on ImageNet: 1).
        weight: factor applied by the task.
    """

    def __init__(
        self,
        teacher: TeacherSpec,
        teacher_temperature: float = 1.0,
        weight: float = 1.0,
        teacher_weights: str | None = None,
        name: str = "pld",
    ) -> None:
        self.teacher_temperature = _check_temperature(teacher_temperature)
        super().__init__(teacher, weight, name, teacher_weights=teacher_weights)

    @staticmethod
    def loss_from_logits(
        student: Tensor, teacher: Tensor, targets: Tensor, teacher_temperature: float = 1.0
    ) -> Tensor:
        """The PLD loss for given logits ``(B, C)`` and integer targets ``(B,)``."""
        s = student.float()
        t = teacher.detach().float()
        # teacher order with the true class forced first: its key is +inf
        keys = t.scatter(1, targets.unsqueeze(1), math.inf)
        order = keys.argsort(dim=1, descending=True)
        s_perm = s.gather(1, order)
        alpha = torch.softmax(t / teacher_temperature, dim=1).gather(1, order)
        suffix = torch.logcumsumexp(s_perm.flip(1), dim=1).flip(1)
        return (alpha * (suffix - s_perm)).sum(1).mean()

    def forward(self, ctx: StepContext) -> ObjectiveOutput:
        if ctx.targets is None:
            raise ValueError("PlackettLuceDistillation needs class targets, but the batch has none")
        t = self.teacher_logits(ctx)
        loss = self.loss_from_logits(ctx.outputs, t, ctx.targets, self.teacher_temperature)
        return ObjectiveOutput(loss, {"agreement": _agreement(ctx.outputs.detach(), t)})


def _entropy(logits: Tensor, temperature: float) -> Tensor:
    logp = F.log_softmax(logits / temperature, dim=-1)
    return -(logp.exp() * logp).sum(-1)


class BalancedDivergenceDistillation(_TeacherObjective):
    """BD-KD: sample-wise balance of forward and reverse KL by the entropy gap (Amara et al.).

    Student term, per sample ``i`` (teacher detached):
    ``w_i KL(p_t,i || p_s,i) + (1 - w_i) KL(p_s,i || p_t,i)`` with
    ``w_i = g(H(p_t,i) - H(p_s,i))``, detached.  Where the student is more confident than the
    teacher (lower entropy) the mode-covering forward KL dominates and spreads its mass; where it
    is less confident the mode-seeking reverse KL sharpens it, which is how BD-KD targets the
    student's calibration.  ``balance="soft"`` uses ``g(d) = sigmoid(sharpness * d)``,
    ``"hard"`` ``g(d) = 1[d > 0]``.  The paper's exact weighting function could not be retrieved
    for this implementation; this one follows its stated rule (weights driven by the entropy
    gap), and ``weight_fn`` replaces it.

    Online (``online=True``, the paper's setting) the teacher is a registered submodule trained
    jointly: its loss ``CE(t, y) + teacher_kd_weight * T^2 KL(p_s || p_t)`` (student detached,
    the reverse-KL regulariser of the teacher) is added, so the task's optimizer updates both
    networks.  Give the student's own cross-entropy as a separate ``CrossEntropy`` objective.

    Args:
        teacher: zoo name (online: built fresh unless ``pretrained_teacher``) or a module.
        temperature: softmax temperature ``T``; both KL terms are scaled by ``T^2``.
        online: train the teacher jointly (else it is frozen).
        balance: ``"soft"`` or ``"hard"``.
        sharpness: slope of the soft balance, per nat of entropy gap.
        teacher_kd_weight: weight of the teacher's KL regulariser.
        weight_fn: custom ``g`` mapping the entropy gap ``H_t - H_s`` to ``w`` in [0, 1].
    """

    def __init__(
        self,
        teacher: TeacherSpec,
        temperature: float = 1.0,
        online: bool = True,
        balance: Literal["soft", "hard"] = "soft",
        sharpness: float = 4.0,
        teacher_kd_weight: float = 1.0,
        pretrained_teacher: bool = False,
        weight: float = 1.0,
        teacher_weights: str | None = None,
        weight_fn: Callable[[Tensor], Tensor] | None = None,
        name: str = "bdkd",
    ) -> None:
        if balance not in ("soft", "hard"):
            raise ValueError(f"balance must be 'soft' or 'hard', got {balance!r}")
        self.temperature = _check_temperature(temperature)
        self.online = online
        self.balance = balance
        self.sharpness = float(sharpness)
        self.teacher_kd_weight = float(teacher_kd_weight)
        self.weight_fn = weight_fn
        super().__init__(
            teacher,
            weight,
            name,
            teacher_weights=teacher_weights,
            frozen=not online,
            pretrained=pretrained_teacher or not online,
        )

    def balance_weights(self, student: Tensor, teacher: Tensor) -> Tensor:
        """``w_i`` (weight of the forward KL) from the entropy gap, detached."""
        with torch.no_grad():
            gap = _entropy(teacher.float(), self.temperature) - _entropy(
                student.float(), self.temperature
            )
            if self.weight_fn is not None:
                return self.weight_fn(gap).clamp(0.0, 1.0)
            if self.balance == "hard":
                return (gap > 0).float()
            return torch.sigmoid(self.sharpness * gap)

    def forward(self, ctx: StepContext) -> ObjectiveOutput:
        t = self.teacher_logits(ctx)
        s = ctx.outputs
        temp = self.temperature
        w = self.balance_weights(s.detach(), t.detach())
        t_fixed = t.detach()
        forward_kl = divergences.kl(t_fixed, s, temperature=temp)
        reverse_kl = divergences.kl(s, t_fixed, temperature=temp)
        student_loss = (w * forward_kl + (1 - w) * reverse_kl).mean() * temp**2
        logs = {
            "forward_weight": w.mean(),
            "entropy_gap": (_entropy(t_fixed, temp) - _entropy(s.detach().float(), temp)).mean(),
            "agreement": _agreement(s.detach(), t_fixed),
        }
        if not self.online:
            return ObjectiveOutput(student_loss, logs)
        if ctx.targets is None:
            raise ValueError("online BD-KD trains the teacher on class targets; the batch has none")
        teacher_ce = F.cross_entropy(t, ctx.targets)
        teacher_reg = divergences.kl(s.detach(), t, temperature=temp, reduction="mean") * temp**2
        logs["teacher_ce"] = teacher_ce.detach()
        logs["teacher_acc"] = (t.detach().argmax(-1) == ctx.targets).float().mean()
        loss = student_loss + teacher_ce + self.teacher_kd_weight * teacher_reg
        return ObjectiveOutput(loss, logs)


def ofa_loss(
    student: Tensor,
    teacher: Tensor,
    targets: Tensor,
    epsilon: float = 1.0,
    temperature: float = 1.0,
) -> Tensor:
    """OFA's adaptive target-enhanced distillation loss (Hao et al. 2023, Eq. 5).

    ``L = mean_i sum_c -[(p_t + m)^eps - m]_c log p_s,c`` with ``m`` the one-hot target: the
    target class gets weight ``(1 + p_t,y)^eps - 1``, the others ``p_t,c^eps``; ``eps = 1`` is
    soft cross-entropy, ``eps > 1`` enhances the target and sharpens the rest.
    """
    dtype = torch.promote_types(student.dtype, torch.float32)
    log_ps = F.log_softmax(student.to(dtype) / temperature, dim=-1)
    pt = torch.softmax(teacher.detach().to(dtype) / temperature, dim=-1)
    onehot = F.one_hot(targets, num_classes=pt.shape[-1]).to(pt.dtype)
    target_weights = (pt + onehot).pow(epsilon) - onehot
    return -(target_weights * log_ps).sum(-1).mean()


class _Projector(nn.Module):
    """Maps a stage's features to class logits, whatever the layout.

    ``(N, C, H, W)`` (convolutional), ``(N, L, C)`` (tokens) and ``(N, C)`` features are all
    brought to ``(N, positions, C)``; a per-position MLP mixes channels, the positions are
    averaged, and a two-layer head gives the logits.  (OFA's own projectors are architecture-
    specific: depthwise-separable convolutions for CNN students, transformer blocks for ViTs.)
    """

    def __init__(self, channels: int, num_classes: int, hidden: int) -> None:
        super().__init__()
        self.channels = channels
        self.mix = nn.Sequential(nn.LayerNorm(channels), nn.Linear(channels, hidden), nn.GELU())
        self.head = nn.Sequential(
            nn.LayerNorm(hidden),
            nn.Linear(hidden, hidden),
            nn.GELU(),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, features: Tensor) -> Tensor:
        if features.ndim == 4:
            x = features.flatten(2).transpose(1, 2)
        elif features.ndim == 3:
            x = features
        elif features.ndim == 2:
            x = features.unsqueeze(1)
        else:
            raise ValueError(
                f"OFA projector expects (N, C, H, W), (N, L, C) or (N, C) features, got "
                f"{tuple(features.shape)}"
            )
        if x.shape[-1] != self.channels:
            raise ValueError(
                f"OFA projector was built for {self.channels} channels but the stage gives "
                f"features of shape {tuple(features.shape)}"
            )
        return self.head(self.mix(x.float()).mean(1))


class OFADistillation(_TeacherObjective):
    """OFA-KD: distillation into every named student stage through logit-space projectors.

    Heterogeneous pairs (a CNN teacher and a transformer student, an equivariant teacher and a
    plain student, ...) are aligned only in logit space, so nothing about the teacher's
    internals is needed.  Forward hooks on the student's modules named in ``stages`` capture
    their outputs during the task's own forward pass; each goes through a projector (a trainable
    part of this objective, optimised with the task's parameters) to class logits, and

        loss = logit_weight * L_OFA(s) + stage_weight * sum_stages L_OFA(proj(f_stage))

    with :func:`ofa_loss` (Hao et al. 2023, Eq. 3-5).  Give the student's cross-entropy as a
    separate objective.  The first call registers the hooks and runs the student once more to
    fill them; later calls reuse the features of the task's forward pass.

    Args:
        teacher: zoo name or module (frozen).
        stages: ``{module name in the student: feature channels}``; names as in
            ``student.named_modules()``; features ``(N, C, H, W)``, ``(N, L, C)`` or ``(N, C)``.
        num_classes: number of classes (the projectors' output size).
        epsilon: target-enhancement exponent, one for all or a mapping ``{stage or "logits":
            eps}`` (OFA: 1 on CIFAR, 1.5 for ImageNet CNN students).
        temperature: softmax temperature of :func:`ofa_loss`.
        hidden: projector width (default: the largest stage channel count).
    """

    def __init__(
        self,
        teacher: TeacherSpec,
        stages: Mapping[str, int],
        num_classes: int = 10,
        epsilon: float | Mapping[str, float] = 1.0,
        temperature: float = 1.0,
        logit_weight: float = 1.0,
        stage_weight: float = 1.0,
        hidden: int | None = None,
        weight: float = 1.0,
        teacher_weights: str | None = None,
        name: str = "ofa",
    ) -> None:
        if not stages:
            raise ValueError(
                "stages is empty: name at least one student module, e.g. {'features.3': 32}"
            )
        super().__init__(teacher, weight, name, teacher_weights=teacher_weights)
        self.stage_names = list(stages)
        self.temperature = _check_temperature(temperature)
        self.logit_weight = float(logit_weight)
        self.stage_weight = float(stage_weight)
        if isinstance(epsilon, Mapping):
            unknown = set(epsilon) - {*self.stage_names, "logits"}
            if unknown:
                raise ValueError(
                    f"epsilon names unknown stages {sorted(unknown)}; stages are {self.stage_names}"
                )
            self.epsilons = {k: float(epsilon.get(k, 1.0)) for k in [*self.stage_names, "logits"]}
        else:
            self.epsilons = {k: float(epsilon) for k in [*self.stage_names, "logits"]}
        width = hidden or max(int(c) for c in stages.values())
        self.projectors = nn.ModuleDict(
            {_key(n): _Projector(int(c), num_classes, width) for n, c in stages.items()}
        )
        self._features: dict[str, Tensor] = {}
        self._handles: list[Any] = []
        object.__setattr__(self, "_hooked", None)

    def _attach(self, network: nn.Module) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        modules = dict(network.named_modules())
        missing = [n for n in self.stage_names if n not in modules]
        if missing:
            names = [n for n in modules if n][:40]
            raise KeyError(f"student has no modules named {missing}; some of its modules: {names}")
        for stage in self.stage_names:
            self._handles.append(modules[stage].register_forward_hook(self._hook(stage)))
        object.__setattr__(self, "_hooked", network)  # a reference, not a submodule

    def _hook(self, stage: str):
        def capture(module: nn.Module, args: Any, output: Any) -> None:
            self._features[stage] = output[0] if isinstance(output, tuple) else output

        return capture

    def stage_logits(self, ctx: StepContext) -> dict[str, Tensor]:
        """Projected logits of every stage for the step's student forward pass."""
        if self._hooked is not ctx.network:
            self._attach(ctx.network)
            self._features.clear()
        batch = ctx.outputs.shape[0]
        if any(
            s not in self._features or self._features[s].shape[0] != batch for s in self.stage_names
        ):
            ctx.network(ctx.inputs)  # first call: fill the hooks once
        features, self._features = self._features, {}
        return {s: self.projectors[_key(s)](features[s]) for s in self.stage_names}

    def forward(self, ctx: StepContext) -> ObjectiveOutput:
        if ctx.targets is None:
            raise ValueError("OFADistillation needs class targets, but the batch has none")
        t = self.teacher_logits(ctx)
        y = ctx.targets
        logit_term = ofa_loss(ctx.outputs, t, y, self.epsilons["logits"], self.temperature)
        logs: dict[str, Tensor] = {"logits": logit_term.detach()}
        stage_total = ctx.outputs.new_zeros((), dtype=torch.float32)
        for stage, logits in self.stage_logits(ctx).items():
            term = ofa_loss(logits, t, y, self.epsilons[stage], self.temperature)
            stage_total = stage_total + term
            logs[f"stage_{_key(stage)}"] = term.detach()
        loss = self.logit_weight * logit_term + self.stage_weight * stage_total
        return ObjectiveOutput(loss, logs)


def _key(stage: str) -> str:
    return stage.replace(".", "_")


class SinkhornDistillation(_TeacherObjective):
    """SinKD: the batch-wise Sinkhorn distance between student and teacher outputs (Cui et al.).

    See :func:`geozoo.objectives.optimal_transport.sinkd_loss`; the paper combines it with a KD
    term and cross-entropy, which are separate objectives here.

    Args:
        teacher: zoo name or module (frozen).
        temperature: softmax temperature (SinKD: 2).
        epsilon: entropic regularisation (SinKD: 0.1).
        iters: Sinkhorn iterations, differentiated through (SinKD: 20).
        scale_by_batch: reproduce the released code's scale (times the batch size).
    """

    def __init__(
        self,
        teacher: TeacherSpec,
        temperature: float = 2.0,
        epsilon: float = 0.1,
        iters: int = 20,
        scale_by_batch: bool = False,
        weight: float = 1.0,
        teacher_weights: str | None = None,
        name: str = "sinkd",
    ) -> None:
        self.temperature = _check_temperature(temperature)
        self.epsilon = float(epsilon)
        self.iters = int(iters)
        self.scale_by_batch = scale_by_batch
        super().__init__(teacher, weight, name, teacher_weights=teacher_weights)

    def forward(self, ctx: StepContext) -> ObjectiveOutput:
        t = self.teacher_logits(ctx)
        loss = sinkd_loss(
            ctx.outputs,
            t,
            self.temperature,
            self.epsilon,
            self.iters,
            scale_by_batch=self.scale_by_batch,
        )
        return ObjectiveOutput(loss, {"agreement": as_scalar(_agreement(ctx.outputs.detach(), t))})
