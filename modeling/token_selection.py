"""Token selection shared by every generator: filters, repetition penalty, greedy choice and categorical draws.

Every function treats the last dim as the vocabulary and any leading dims as independent distributions (e.g.
``[B, V]`` for one channel, ``[B, N, A]`` for N codebooks). Nothing here synchronises with the host, and nothing
changes shape from one step to the next, so a decode loop built on it stays compile / CUDA-graph friendly.

The reference implementations of our families differ in a few details; each difference is a named option here,
never a second copy of the code:

==================  =====================================================  ===================================
option              ``"reference"`` / MOSS Delay default                   transformers semantics (MOSS Local)
==================  =====================================================  ===================================
``top_k_ties``      ``"drop"``: exactly the ``k`` entries of               ``"keep"``: every entry tied with
                    ``torch.topk``                                         the k-th value survives
                                                                           (``TopKLogitsWarper``)
``top_p_rule``      ``"exclusive"``: sort descending, drop an entry once   ``"transformers"``: sort ascending,
                    the mass *before* it exceeds ``p``                     drop mass ``<= 1 - p``
                                                                           (``TopPLogitsWarper``)
``draw_method``     ``"multinomial"``: ``torch.multinomial`` (consumes     ``"exponential_race"``:
                    the generator as the references do)                    ``argmax(p / E)``, ``E ~ Exp(1)``,
                                                                           same law, CUDA-graph safe
``penalize_greedy``  ``True``: greedy picks the argmax of the penalised     ``False``: greedy is the argmax of
                    scores                                                 the raw logits
==================  =====================================================  ===================================

The repetition penalty is transformers' (divide positive, multiply negative scores of tokens already seen; each
seen token once); "seen" is a boolean mask of the vocabulary's shape, so the cost per step never grows.
:class:`RepetitionHistory` keeps such a mask per sequence and codebook and offers the MOSS Delay reference's
batch/codebook union as ``scope="reference"`` (a flattening side effect of that code, reproduced only on request).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

__all__ = [
    "ChannelSampling",
    "RepetitionHistory",
    "apply_repetition_penalty",
    "choose",
    "draw",
    "process_logits",
    "select_tokens",
    "top_k_filter",
    "top_p_filter",
]

TopKTies = Literal["drop", "keep"]
TopPRule = Literal["exclusive", "transformers"]
DrawMethod = Literal["multinomial", "exponential_race"]


# ----------------------------------------------------------------------------------------------------------- filters
def top_k_filter(scores: torch.Tensor, top_k: int, ties: TopKTies = "drop") -> torch.Tensor:
    """Keep the ``top_k`` largest scores along the last dim, set the others to ``-inf`` (``top_k <= 0``: no-op).

    ``ties="drop"`` keeps exactly the entries ``torch.topk`` returns; ``ties="keep"`` keeps every entry ``>=`` the
    k-th value, as transformers' ``TopKLogitsWarper``.
    """
    if top_k is None or top_k <= 0 or top_k >= scores.shape[-1]:
        return scores
    if ties == "keep":
        kth = torch.topk(scores, top_k, dim=-1).values[..., -1:]
        return scores.masked_fill(scores < kth, float("-inf"))
    if ties != "drop":
        raise ValueError(f"top_k ties must be 'drop' or 'keep', got {ties!r}")
    keep = torch.zeros_like(scores, dtype=torch.bool).scatter_(-1, scores.topk(top_k, dim=-1).indices, True)
    return scores.masked_fill(~keep, float("-inf"))


def top_p_filter(scores: torch.Tensor, top_p: float, rule: TopPRule = "exclusive") -> torch.Tensor:
    """Nucleus filter along the last dim (``top_p >= 1`` or ``None``: no-op); the most likely entry always stays.

    ``rule="exclusive"``: sort descending and drop an entry once the probability mass *before* it exceeds ``p``.
    ``rule="transformers"``: ``TopPLogitsWarper`` (sort ascending, drop the entries whose cumulative mass is
    ``<= 1 - p``). The two differ only at exact boundaries.
    """
    if top_p is None or top_p >= 1.0:
        return scores
    if rule == "transformers":
        sorted_scores, order = torch.sort(scores, descending=False, dim=-1)
        remove_sorted = sorted_scores.softmax(dim=-1).cumsum(dim=-1) <= (1 - top_p)
        remove_sorted[..., -1:] = False
    elif rule == "exclusive":
        sorted_scores, order = scores.sort(dim=-1, descending=True)
        remove_sorted = sorted_scores.softmax(dim=-1).cumsum(dim=-1) > top_p
        # shift right: an entry goes only if the mass *before* it already exceeds p; the first always stays
        remove_sorted = torch.cat([torch.zeros_like(remove_sorted[..., :1]), remove_sorted[..., :-1]], dim=-1)
    else:
        raise ValueError(f"top_p rule must be 'exclusive' or 'transformers', got {rule!r}")
    remove = torch.zeros_like(remove_sorted).scatter_(-1, order, remove_sorted)
    return scores.masked_fill(remove, float("-inf"))


def apply_repetition_penalty(scores: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """transformers' repetition penalty on every entry marked in ``seen`` (bool, broadcastable to ``scores``)."""
    if penalty == 1.0:
        return scores
    penalised = torch.where(scores < 0, scores * penalty, scores / penalty)
    return torch.where(seen, penalised, scores)


class RepetitionHistory:
    """Which codes each sequence has already used, per codebook: a presence table ``[B, N, A]``.

    Filled once from the prompt and updated with each new row, so the per-step cost does not grow with the length.

    Args:
        history: ``[B, T, N]`` codes already in the sequences; values outside ``[0, A)`` are ignored.
        num_codes: ``A``, the vocabulary size of one codebook.
        ignore_code: a code never counted (the audio pad).
        scope: ``"sequence"`` (each sequence and codebook sees only its own history) or ``"reference"`` (the MOSS
            Delay reference: codebook 0 sees the union over the batch of codebook 0; codebooks 1..N-1 see the union
            over the batch *and* those codebooks).
    """

    def __init__(self, history: torch.Tensor, num_codes: int, ignore_code: int | None = None, scope: str = "sequence"):
        if scope not in ("sequence", "reference"):
            raise ValueError(f"audio_repetition_penalty_scope must be 'sequence' or 'reference', got {scope!r}")
        self.scope = scope
        self.num_codes = num_codes
        self.ignore_code = ignore_code
        batch, _, num_codebooks = history.shape
        # one extra "sink" column receives codes that must not count (pad, out of range); it is never read
        self._seen = torch.zeros(batch, num_codebooks, num_codes + 1, dtype=torch.bool, device=history.device)
        self.update(history.transpose(1, 2))

    def update(self, codes: torch.Tensor) -> None:
        """Add ``codes`` (``[B, N]`` or ``[B, N, T]``) to the history."""
        codes = codes if codes.dim() == 3 else codes[..., None]
        valid = (codes >= 0) & (codes < self.num_codes)
        if self.ignore_code is not None:
            valid &= codes != self.ignore_code
        self._seen.scatter_(-1, torch.where(valid, codes, self.num_codes), True)

    def mask(self) -> torch.Tensor:
        """``[B, N, A]`` bool: the codes the penalty applies to, under this history's ``scope``."""
        seen = self._seen[..., : self.num_codes]
        if self.scope == "reference":
            first = seen[:, :1].any(dim=0, keepdim=True)
            rest = seen[:, 1:].any(dim=(0, 1), keepdim=True).expand(1, seen.shape[1] - 1, -1)
            seen = torch.cat([first, rest], dim=1).expand_as(seen)
        return seen


# -------------------------------------------------------------------------------------------------------- selection
@dataclass(frozen=True)
class ChannelSampling:
    """How one channel (the text column, or every audio codebook) picks its token.

    ``do_sample=False`` or ``temperature <= 0`` is greedy; ``top_k`` 0/None and ``top_p`` >= 1/None disable those
    filters; ``repetition_penalty`` 1.0 disables the penalty. The last four fields are the reference variants of
    the module docstring; the defaults are transformers' semantics.
    """

    do_sample: bool = False
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    repetition_penalty: float = 1.0
    top_k_ties: TopKTies = "keep"
    top_p_rule: TopPRule = "transformers"
    draw_method: DrawMethod = "exponential_race"
    penalize_greedy: bool = False

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


def process_logits(logits: torch.Tensor, sampling: ChannelSampling, seen: torch.Tensor | None = None) -> torch.Tensor:
    """Repetition penalty → temperature → top-k → top-p (transformers' order); float32 scores ready to choose from.

    ``seen`` marks the tokens the repetition penalty applies to (bool, broadcastable to ``logits``). A greedy
    channel gets only the penalty (and only with ``penalize_greedy``): the other steps cannot change an argmax.
    """
    scores = logits.float()
    if seen is not None and (not sampling.greedy or sampling.penalize_greedy):
        scores = apply_repetition_penalty(scores, seen, float(sampling.repetition_penalty))
    if sampling.greedy:
        return scores
    if sampling.temperature != 1.0:
        scores = scores / float(sampling.temperature)
    scores = top_k_filter(scores, int(sampling.top_k or 0), ties=sampling.top_k_ties)
    return top_p_filter(scores, sampling.top_p, rule=sampling.top_p_rule)


def draw(
    scores: torch.Tensor, generator: torch.Generator | None = None, method: DrawMethod = "exponential_race"
) -> torch.Tensor:
    """One categorical sample per distribution (last dim) of ``softmax(scores)``; returns ``scores.shape[:-1]``."""
    probs = scores.float().softmax(dim=-1)
    if method == "multinomial":
        flat = probs.reshape(-1, probs.shape[-1])
        return torch.multinomial(flat, num_samples=1, generator=generator).view(probs.shape[:-1])
    if method != "exponential_race":
        raise ValueError(f"draw method must be 'multinomial' or 'exponential_race', got {method!r}")
    race = torch.empty_like(probs).exponential_(generator=generator).clamp_min_(torch.finfo(probs.dtype).tiny)
    return (probs / race).argmax(dim=-1)


def choose(scores: torch.Tensor, sampling: ChannelSampling, generator: torch.Generator | None = None) -> torch.Tensor:
    """Argmax (greedy) or one draw per distribution of already processed ``scores``; int64 ``scores.shape[:-1]``."""
    if sampling.greedy:
        return scores.argmax(dim=-1)
    return draw(scores, generator=generator, method=sampling.draw_method)


def select_tokens(
    logits: torch.Tensor,
    sampling: ChannelSampling,
    seen: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """:func:`process_logits` then :func:`choose`: one token per distribution of ``logits`` → int64."""
    return choose(process_logits(logits, sampling, seen), sampling, generator)
