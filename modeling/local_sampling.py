"""Token selection for one channel of the Local generator: static-shape, no host synchronisation.

Sampling follows transformers' logits-processor order and semantics, as the original Local 1.0 generation does:
repetition penalty → temperature → top-k (ties with the k-th value kept) → top-p (ascending-cumsum variant, at least
one token kept) → draw. Greedy selection is a plain argmax of the raw logits (no penalty), as in the original.

The repetition penalty works on a boolean ``history`` mask ``[batch, vocab]`` ("this token already occurs in this
sequence's column") instead of gathering over a growing token list, so its shape never changes during generation;
the result is identical to ``RepetitionPenaltyLogitsProcessor`` (each present token is penalised once).

The draw uses the exponential-race form of categorical sampling (``argmax(p / E)``, ``E ~ Exp(1)``), which has the
same distribution as ``torch.multinomial`` but is a plain elementwise op + argmax (CUDA-graph safe, unlike multinomial).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ChannelSampling:
    """How to pick the token of one channel group (text, or every audio codebook).

    ``do_sample=False`` (or ``temperature <= 0``) means greedy; ``top_k`` 0/None and ``top_p`` >= 1/None disable
    those filters; ``repetition_penalty`` 1.0 disables the penalty.
    """

    do_sample: bool = False
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    repetition_penalty: float = 1.0

    def __post_init__(self):
        if self.top_k is not None and (not isinstance(self.top_k, int) or self.top_k < 0):
            raise ValueError(f"top_k must be a non-negative int or None, got {self.top_k!r}")
        if self.top_p is not None and not 0.0 < float(self.top_p) <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p!r}")
        if not float(self.repetition_penalty) > 0.0:
            raise ValueError(f"repetition_penalty must be > 0, got {self.repetition_penalty!r}")

    @property
    def greedy(self) -> bool:
        return not self.do_sample or self.temperature is None or self.temperature <= 0


def apply_repetition_penalty(logits: torch.Tensor, history: torch.Tensor, penalty: float) -> torch.Tensor:
    """transformers' repetition penalty on every token marked in ``history`` (bool, same shape as ``logits``)."""
    penalized = torch.where(logits < 0, logits * penalty, logits / penalty)
    return torch.where(history, penalized, logits)


def top_k_filter(logits: torch.Tensor, top_k: int) -> torch.Tensor:
    """Keep the ``top_k`` largest logits and every logit tied with the k-th; the rest become -inf."""
    top_k = min(max(top_k, 1), logits.shape[-1])
    kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Nucleus filter as transformers' ``TopPLogitsWarper`` (ascending sort, drop mass <= 1 - top_p, keep >= 1)."""
    sorted_logits, sorted_indices = torch.sort(logits, descending=False, dim=-1)
    cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    sorted_remove = cumulative <= (1 - top_p)
    sorted_remove[..., -1:] = False
    remove = sorted_remove.scatter(-1, sorted_indices, sorted_remove)
    return logits.masked_fill(remove, float("-inf"))


def process_logits(logits: torch.Tensor, sampling: ChannelSampling, history: torch.Tensor | None = None) -> torch.Tensor:
    """The sampling warpers in transformers' order; returns float32 scores ready for the draw."""
    scores = logits.float()
    if history is not None and sampling.repetition_penalty != 1.0:
        scores = apply_repetition_penalty(scores, history, float(sampling.repetition_penalty))
    if sampling.temperature != 1.0:
        scores = scores / float(sampling.temperature)
    if sampling.top_k:
        scores = top_k_filter(scores, int(sampling.top_k))
    if sampling.top_p is not None and sampling.top_p < 1.0:
        scores = top_p_filter(scores, float(sampling.top_p))
    return scores


def draw(scores: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One categorical sample per row of ``scores`` [B, V] (exponential race; same law as multinomial)."""
    probs = scores.softmax(dim=-1)
    race = torch.empty_like(probs).exponential_(generator=generator).clamp_min_(torch.finfo(probs.dtype).tiny)
    return (probs / race).argmax(dim=-1)


def select_tokens(
    logits: torch.Tensor,
    sampling: ChannelSampling,
    history: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Pick one token per row of ``logits`` [B, V] → [B] (int64)."""
    if sampling.greedy:
        return logits.argmax(dim=-1)
    return draw(process_logits(logits, sampling, history), generator=generator)


__all__ = ["ChannelSampling", "apply_repetition_penalty", "draw", "process_logits", "select_tokens"]
