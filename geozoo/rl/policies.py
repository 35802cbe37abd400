"""Policies: networks that sample responses and score them token by token.

A policy is an ``nn.Module`` with

* ``sample(prompts, num_samples, temperature, top_k, generator)`` -> :class:`Sample`: ``G``
  responses per prompt (group-major), their per-token log-probs (carrying the gradient when
  grad mode is on, so an on-policy step needs no second forward pass) and entropies;
* ``log_probs(prompts, responses, group, temperature)`` -> ``(N, T)`` per-token log-probs of
  given responses (zero at padding), each prompt encoded once for its whole group;
* ``forward(prompts)``: what the zoo evaluates (class logits, or the greedy decode's logits).

Log-probs and entropies are those of ``softmax(logits / temperature)``; ``top_k`` only
truncates what is *drawn* (the log-probs stay those of the untruncated tempered distribution).

:class:`ClassifierPolicy` turns any classifier into a one-token policy (a contextual bandit);
:class:`DigitSumPolicy` reads an image of several digits with a zoo image encoder and writes
their sum with a small causal transformer decoder that caches keys and values, so sampling
``T`` tokens costs ``T`` single-position steps (linear in length, not quadratic).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from geozoo.nn.checks import check_images
from geozoo.rl.rollouts import group_ids

__all__ = ["ClassifierPolicy", "DigitSumPolicy", "Sample", "draw", "response_mask"]


@dataclass
class Sample:
    """``N = B * G`` responses drawn from a policy (see :mod:`geozoo.rl.rollouts`)."""

    group: Tensor
    responses: Tensor
    mask: Tensor
    logp: Tensor
    entropy: Tensor


def draw(
    logits: Tensor, temperature: float = 1.0, top_k: int | None = None, generator=None
) -> tuple[Tensor, Tensor, Tensor]:
    """One token per row of ``logits (N, V)``: ``(token, log-prob, entropy)`` under
    ``softmax(logits / temperature)``, drawn from its ``top_k`` most likely tokens if given."""
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature!r}")
    logp_all = (logits.float() / temperature).log_softmax(-1)
    with torch.no_grad():
        scores = logp_all.detach()
        if top_k is not None and top_k < scores.shape[-1]:
            kth = scores.topk(top_k, dim=-1).values[..., -1:]
            scores = scores.masked_fill(scores < kth, -math.inf)
        token = torch.multinomial(scores.softmax(-1), 1, generator=generator)[:, 0]
        entropy = -(logp_all.exp() * logp_all).sum(-1).detach()
    return token, logp_all.gather(-1, token[:, None])[:, 0], entropy


class ClassifierPolicy(nn.Module):
    """A classifier as a one-token policy: the response is a class, its log-prob the
    classifier's tempered log-softmax (the contextual bandit of RL on labels).

    Args:
        network: maps prompts ``(B, ...)`` to class logits ``(B, C)``.
    """

    max_length = 1

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, prompts: Tensor) -> Tensor:
        return self.network(prompts)

    def sample(
        self,
        prompts: Tensor,
        num_samples: int = 1,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
    ) -> Sample:
        logits = self.network(prompts)
        group = group_ids(len(logits), num_samples, logits.device)
        token, logp, entropy = draw(logits[group], temperature, top_k, generator)
        return Sample(
            group,
            token[:, None],
            torch.ones_like(token[:, None], dtype=torch.bool),
            logp[:, None],
            entropy[:, None],
        )

    def log_probs(
        self,
        prompts: Tensor,
        responses: Tensor,
        group: Tensor | None = None,
        temperature: float = 1.0,
    ) -> Tensor:
        logits = self.network(prompts)
        if group is not None:
            logits = logits[group]
        return (logits.float() / temperature).log_softmax(-1).gather(-1, responses[:, :1])


class _Block(nn.Module):
    """Pre-norm causal self-attention + MLP block with an optional key/value cache."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(
        self, x: Tensor, cache: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        n, length, dim = x.shape
        q, k, v = (
            self.qkv(self.norm1(x))
            .reshape(n, length, 3, self.heads, dim // self.heads)
            .permute(2, 0, 3, 1, 4)
        )
        if cache is not None:
            k, v = torch.cat([cache[0], k], 2), torch.cat([cache[1], v], 2)
        # new positions see every cached one and, causally, each other
        past = k.shape[2] - length
        mask = torch.ones(length, k.shape[2], dtype=torch.bool, device=x.device).tril(past)
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = x + self.proj(attended.transpose(1, 2).reshape(n, length, dim))
        return x + self.mlp(self.norm2(x)), (k, v)


class DigitSumPolicy(nn.Module):
    """Reads an image of ``num_digits`` MNIST digits side by side and writes their sum.

    The image ``(B, 1, 28, 28 * num_digits)`` is cut into one 28x28 slot per digit; each slot
    is read by the convolutional features of :class:`geozoo.nets.PlainCNN` (by default
    initialised from the zoo's ``cnn_mnist``, which saw the digits centred in a 40x40 frame, and
    frozen), pooled as the encoder's classifier pools them (average or max) and projected to one
    token.  A causal transformer decoder then writes the sum's decimal digits and an
    end-of-sequence token after a start token.

    Tokens: ``0..9`` digits, ``10`` end-of-sequence (:attr:`EOS`); ``11`` start (:attr:`BOS`)
    and ``12`` padding (:attr:`PAD`) are inputs only.

    Args:
        num_digits: digits per image.
        dim, heads, layers: decoder width, attention heads and blocks.
        encoder_widths: ``widths`` of the ``PlainCNN`` encoder.
        encoder_global_pool, encoder_padding_mode: ``global_pool`` and ``padding_mode`` of a
            ``PlainCNN`` built here (``pretrained_encoder=False``); a pretrained ``encoder`` is
            built as its entry was published, and must agree with them when they are given.
        encoder: zoo entry whose weights initialise the encoder (``None``: random init).
        pretrained_encoder: load ``encoder``'s published weights when built.
        freeze_encoder: keep the encoder fixed (eval mode, no gradient).
        max_length: longest response in tokens (end-of-sequence included).
    """

    EOS, BOS, PAD = 10, 11, 12
    vocab_size = 11

    def __init__(
        self,
        num_digits: int = 2,
        dim: int = 64,
        heads: int = 4,
        layers: int = 2,
        encoder_widths: Sequence[int] = (16, 32, 64),
        encoder_global_pool: Literal["avg", "max"] | None = None,
        encoder_padding_mode: Literal["zeros", "replicate", "reflect"] | None = None,
        encoder: str | None = "cnn_mnist",
        pretrained_encoder: bool = True,
        freeze_encoder: bool = True,
        max_length: int = 3,
    ) -> None:
        super().__init__()
        if num_digits < 1 or max_length < 1 or dim % heads:
            raise ValueError(
                f"need num_digits >= 1, max_length >= 1 and dim divisible by heads, got "
                f"{num_digits}, {max_length}, {dim}/{heads}"
            )
        needed = len(str(9 * num_digits)) + 1
        if max_length < needed:
            raise ValueError(
                f"sums of {num_digits} digits need max_length >= {needed}, got {max_length}"
            )
        self.num_digits = num_digits
        self.max_length = max_length
        self.freeze_encoder = freeze_encoder
        from geozoo.nets.cnn import PlainCNN  # here: geozoo.nets registers this module's entry

        if encoder is not None and pretrained_encoder:
            from geozoo.zoo.factory import create_model

            published = create_model(encoder, pretrained=True)
            if not isinstance(published, PlainCNN):
                raise ValueError(
                    f"encoder must name a PlainCNN zoo entry, got {encoder!r} "
                    f"({type(published).__name__})"
                )
            # the entry's own architecture (its global pooling and padding), not the defaults
            self.backbone = published
            for name, wanted, built in (
                ("encoder_global_pool", encoder_global_pool, published.global_pool),
                ("encoder_padding_mode", encoder_padding_mode, published.padding_mode),
            ):
                if wanted is not None and wanted != built:
                    raise ValueError(f"{name}={wanted!r}, but the entry {encoder!r} has {built!r}")
        else:
            self.backbone = PlainCNN(
                1,
                10,
                tuple(encoder_widths),
                (40, 40),
                dropout=0.0,
                global_pool=encoder_global_pool or "avg",
                padding_mode=encoder_padding_mode or "zeros",
            )
        if freeze_encoder:  # fixed weights and batch-norm statistics, from construction on
            self.backbone.requires_grad_(False).eval()
        self.slot_proj = nn.Linear(self.backbone.head[-1].in_features, dim)
        self.embed = nn.Embedding(13, dim)
        self.position = nn.Parameter(torch.zeros(num_digits + 1 + max_length, dim))
        nn.init.normal_(self.position, std=0.02)
        self.blocks = nn.ModuleList(_Block(dim, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, self.vocab_size)

    def train(self, mode: bool = True) -> DigitSumPolicy:
        super().train(mode)
        if self.freeze_encoder:
            self.backbone.eval()  # a frozen encoder keeps its batch-norm statistics
        return self

    # ---------------------------------------------------------------- encoding

    def encode(self, images: Tensor) -> Tensor:
        """``(B, num_digits, dim)`` slot tokens of the images."""
        check_images(images, 1, (28, 28 * self.num_digits))
        b = images.shape[0]
        slots = images.reshape(b, 1, 28, self.num_digits, 28).permute(0, 3, 1, 2, 4)
        # the 28x28 digit itself: the convolutions see what they saw at the centre of the
        # encoder's 40x40 frame, for half the cost of padding back to it
        slots = slots.reshape(b * self.num_digits, 1, 28, 28)
        net = self.backbone
        if self.freeze_encoder:
            features = _frozen_features(net, images, slots)
        else:
            features = _pooled_features(net, slots)
        return self.slot_proj(features).reshape(b, self.num_digits, -1)

    def _prefix(self, slots: Tensor) -> Tensor:
        bos = self.embed.weight[self.BOS].expand(slots.shape[0], 1, -1)
        return torch.cat([slots, bos], 1)

    def _run(
        self, x: Tensor, start: int, caches: list | None
    ) -> tuple[Tensor, list[tuple[Tensor, Tensor]]]:
        x = x + self.position[start : start + x.shape[1]]
        new = []
        for i, block in enumerate(self.blocks):
            x, cache = block(x, None if caches is None else caches[i])
            new.append(cache)
        return self.head(self.norm(x)), new

    # ---------------------------------------------------------------- policy interface

    def log_probs(
        self,
        prompts: Tensor,
        responses: Tensor,
        group: Tensor | None = None,
        temperature: float = 1.0,
    ) -> Tensor:
        """Teacher-forced ``(N, T)`` log-probs of ``responses`` (zero after end-of-sequence)."""
        slots = self.encode(prompts)
        if group is not None:
            slots = slots[group]
        t = responses.shape[1]
        if t > self.max_length:
            raise ValueError(f"responses are longer ({t}) than max_length={self.max_length}")
        previous = self.embed(responses[:, :-1].clamp(0, self.PAD))
        logits, _ = self._run(torch.cat([self._prefix(slots), previous], 1), 0, None)
        logp = (logits[:, self.num_digits :].float() / temperature).log_softmax(-1)
        valid = response_mask(responses, self.EOS)
        chosen = logp.gather(-1, responses.clamp(0, self.vocab_size - 1)[..., None])[..., 0]
        return chosen.masked_fill(~valid, 0.0)

    def sample(
        self,
        prompts: Tensor,
        num_samples: int = 1,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
    ) -> Sample:
        """``num_samples`` responses per image, decoded with a key/value cache."""
        slots = self.encode(prompts)
        group = group_ids(len(slots), num_samples, slots.device)
        logits, caches = self._run(self._prefix(slots)[group], 0, None)
        step_logits = logits[:, -1]
        n = len(group)
        tokens, logps, entropies = [], [], []
        done = torch.zeros(n, dtype=torch.bool, device=slots.device)
        for t in range(self.max_length):
            token, logp, entropy = draw(step_logits, temperature, top_k, generator)
            token = token.masked_fill(done, self.PAD)
            tokens.append(token)
            logps.append(logp.masked_fill(done, 0.0))
            entropies.append(entropy.masked_fill(done, 0.0))
            done = done | (token == self.EOS)
            if bool(done.all()) or t == self.max_length - 1:
                break
            logits, caches = self._run(self.embed(token)[:, None], self.num_digits + 1 + t, caches)
            step_logits = logits[:, -1]
        responses = torch.stack(tokens, 1)
        return Sample(
            group,
            responses,
            response_mask(responses, self.EOS),
            torch.stack(logps, 1),
            torch.stack(entropies, 1),
        )

    def forward(self, prompts: Tensor) -> Tensor:
        """Logits ``(B, max_length, 11)`` along the greedy decode (what the zoo evaluates)."""
        slots = self.encode(prompts)
        logits, caches = self._run(self._prefix(slots), 0, None)
        outputs = [logits[:, -1]]
        for t in range(self.max_length - 1):
            token = outputs[-1].argmax(-1)
            logits, caches = self._run(self.embed(token)[:, None], self.num_digits + 1 + t, caches)
            outputs.append(logits[:, -1])
        return torch.stack(outputs, 1)


#: The last encoding by a frozen encoder: ``(images, encoder, versions, features)``.
_LAST_FROZEN: list[tuple[Tensor, nn.Module, tuple[int, ...], Tensor]] = []


def _pooled_features(net: nn.Module, slots: Tensor) -> Tensor:
    """``(N, C)`` features of the encoder, pooled as its classifier pools them."""
    return net.head[0](net.features((slots - net.mean) / net.std)).flatten(1)


@torch.no_grad()
def _frozen_features(net: nn.Module, images: Tensor, slots: Tensor) -> Tensor:
    """Pooled features of a frozen encoder, reused when the same encoder object reads the same
    unchanged images tensor again: an RL step encodes its prompts for the policy and for the
    reference (which shares the policy's frozen modules, see ``RLTask.reference``) once.  The
    entry holds its tensors, so the identity checks cannot match a recycled object."""
    versions = (images._version, *(p._version for p in net.parameters()))
    if _LAST_FROZEN:
        last_images, last_net, last_versions, features = _LAST_FROZEN[0]
        if last_images is images and last_net is net and last_versions == versions:
            return features
    features = _pooled_features(net, slots)
    _LAST_FROZEN[:] = [(images, net, versions, features)]
    return features


def response_mask(responses: Tensor, eos: int) -> Tensor:
    """``(N, T)`` bool: positions up to and including the first ``eos`` (all if none)."""
    is_eos = (responses == eos).int()
    after = is_eos.cumsum(-1) - is_eos  # end-of-sequence tokens strictly before each position
    return after == 0
