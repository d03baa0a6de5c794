"""Sampling helpers for multi-codebook audio logits ``[..., A]`` (e.g. ``[B, N, A]``: batch, codebook, codes).

Generic and batched: every function treats the last dim as the vocabulary and any leading dims as independent
distributions, so top-k/top-p act per codebook and per sequence. No host synchronisation anywhere (safe inside a
decode loop on an accelerator).

Semantics follow the MOSS-TTS reference helpers (`inference_utils.py`):

* :func:`top_k_filter` keeps exactly the ``k`` entries returned by ``torch.topk`` (ties broken by ``topk``);
* :func:`top_p_filter` sorts descending and drops entries once the cumulative probability *before* them exceeds
  ``p`` (the most likely entry is always kept);
* :class:`AudioRepetitionPenalty` divides positive / multiplies non-positive logits of codes already present
  in the history. Deliberate deviation: the reference penalises, for codebooks 1..N-1, the union of codes of *all*
  those codebooks across *all* batch rows (a flattening side effect); here each sequence and codebook only sees its
  own history, so batched results equal unbatched ones. ``scope="reference"`` reproduces the reference exactly
  (codebook 0: union over the batch of codebook 0; codebooks 1..N-1: union over the batch and those codebooks), for
  bit-parity with recorded outputs. (Order with temperature does not matter: both are sign-preserving rescalings.)
"""

from __future__ import annotations

import torch

__all__ = ["AudioRepetitionPenalty", "select_tokens", "top_k_filter", "top_p_filter"]


def top_k_filter(scores: torch.Tensor, top_k: int) -> torch.Tensor:
    """Keep the ``top_k`` largest scores along the last dim, set the others to ``-inf``."""
    if top_k <= 0 or top_k >= scores.shape[-1]:
        return scores
    indices = scores.topk(top_k, dim=-1).indices
    keep = torch.zeros_like(scores, dtype=torch.bool).scatter_(-1, indices, True)
    return scores.masked_fill(~keep, float("-inf"))


def top_p_filter(scores: torch.Tensor, top_p: float) -> torch.Tensor:
    """Nucleus filter along the last dim (skipped for ``top_p >= 1``)."""
    if top_p >= 1.0:
        return scores
    sorted_scores, order = scores.sort(dim=-1, descending=True)
    cumulative = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
    remove_sorted = cumulative > top_p
    # shift right: an entry is removed only if the mass *before* it already exceeds p; the first is always kept
    remove_sorted = torch.cat([torch.zeros_like(remove_sorted[..., :1]), remove_sorted[..., :-1]], dim=-1)
    remove = torch.zeros_like(remove_sorted).scatter_(-1, order, remove_sorted)
    return scores.masked_fill(remove, float("-inf"))


def select_tokens(scores: torch.Tensor, do_sample: bool, generator: torch.Generator | None = None) -> torch.Tensor:
    """Argmax or one multinomial draw per distribution (last dim); returns ``scores.shape[:-1]`` int64."""
    if not do_sample:
        return scores.argmax(dim=-1)
    probs = scores.float().softmax(dim=-1)
    flat = probs.reshape(-1, probs.shape[-1])
    return torch.multinomial(flat, num_samples=1, generator=generator).view(probs.shape[:-1])


class AudioRepetitionPenalty:
    """Repetition penalty per sequence and per codebook, with a presence table ``seen [B, N, A]``.

    The table is filled once from the prompt and updated with each new row, so the cost per step does not grow
    with the sequence length and the shapes stay static (compile/CUDA-graph friendly).

    Args:
        penalty: > 1 discourages repeats; 1 disables.
        history: ``[B, T, N]`` codes already in the sequences (the prompt); values outside ``[0, A)`` are ignored.
        num_codes: ``A``, the size of the last logits dim.
        ignore_code: a code never counted as history (the audio pad).
        scope: ``"sequence"`` (each sequence and codebook has its own history) or ``"reference"`` (the MOSS-TTS
            reference's batch/codebook union, see the module docstring).
    """

    def __init__(
        self,
        penalty: float,
        history: torch.Tensor,
        num_codes: int,
        ignore_code: int | None = None,
        scope: str = "sequence",
    ):
        if penalty <= 0:
            raise ValueError(f"audio_repetition_penalty must be > 0, got {penalty}")
        if scope not in ("sequence", "reference"):
            raise ValueError(f"audio_repetition_penalty_scope must be 'sequence' or 'reference', got {scope!r}")
        self.scope = scope
        self.penalty = float(penalty)
        self.num_codes = num_codes
        self.ignore_code = ignore_code
        batch, _, num_codebooks = history.shape
        # one extra "sink" column receives codes that must not count (pad, out of range); it is never read
        self._seen = torch.zeros(batch, num_codebooks, num_codes + 1, dtype=torch.bool, device=history.device)
        self.update(history.transpose(1, 2))

    @property
    def seen(self) -> torch.Tensor:
        """``[B, N, A]`` bool: code already in the history of that sequence and codebook."""
        return self._seen[..., : self.num_codes]

    def update(self, codes: torch.Tensor) -> None:
        """Add ``codes`` (``[B, N]`` or ``[B, N, T]``) to the history."""
        codes = codes if codes.dim() == 3 else codes[..., None]
        valid = (codes >= 0) & (codes < self.num_codes)
        if self.ignore_code is not None:
            valid &= codes != self.ignore_code
        index = torch.where(valid, codes, self.num_codes)
        self._seen.scatter_(-1, index, True)

    def __call__(self, scores: torch.Tensor) -> torch.Tensor:
        if self.penalty == 1.0:
            return scores
        seen = self.seen
        if self.scope == "reference":
            first = seen[:, :1].any(dim=0, keepdim=True)
            rest = seen[:, 1:].any(dim=(0, 1), keepdim=True).expand(1, seen.shape[1] - 1, -1)
            seen = torch.cat([first, rest], dim=1).expand_as(seen)
        penalised = torch.where(scores > 0, scores / self.penalty, scores * self.penalty)
        return torch.where(seen, penalised, scores)
