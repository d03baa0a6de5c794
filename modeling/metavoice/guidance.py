"""Classifier-free guidance of the MetaVoice first stage, as a logits processor on a replicated batch.

``guidance_scale=(g_spk, g_prompt)`` (a float ``g`` means ``(g, 1.0)``; ``None`` = off). The batch is replicated:
copy 0 is conditional, copy 1 has no speaker term (speaker-unconditional) and, when ``g_prompt != 1``, copy 2 keeps
the speaker but sees every text id (prompt and generated) as end-of-text (prompt-unconditional). The combined
logits ``(g_spk + g_prompt - 1)·cond + (1 - g_spk)·uncond_spk + (1 - g_prompt)·uncond_prompt`` are given to every
copy, so all copies draw the same token and stay aligned.
"""

from __future__ import annotations

import torch
from transformers import LogitsProcessor

__all__ = ["MetaVoiceGuidanceLogitsProcessor", "MetaVoiceInterleaveLogitsProcessor", "guidance_weights"]


def guidance_weights(guidance_scale) -> tuple[float, ...] | None:
    """``(w_cond, w_uncond_spk[, w_uncond_prompt])`` for ``guidance_scale``, or ``None`` when guidance is off."""
    if guidance_scale is None:
        return None
    if isinstance(guidance_scale, (int, float)) and not isinstance(guidance_scale, bool):
        g_spk, g_prompt = float(guidance_scale), 1.0
    elif isinstance(guidance_scale, (tuple, list)) and len(guidance_scale) == 2:
        g_spk, g_prompt = (float(g) for g in guidance_scale)
    else:
        raise ValueError(
            f"guidance_scale must be None, a float or a (speaker, prompt) pair of floats, got {guidance_scale!r}"
        )
    if not (g_spk >= 1.0 and g_prompt >= 1.0):
        raise ValueError(f"guidance_scale values must be >= 1 (1 = no guidance on that term), got {(g_spk, g_prompt)}")
    if g_spk == 1.0 and g_prompt == 1.0:
        return None
    weights = (g_spk + g_prompt - 1.0, 1.0 - g_spk)
    return weights + (1.0 - g_prompt,) if g_prompt != 1.0 else weights


class MetaVoiceGuidanceLogitsProcessor(LogitsProcessor):
    """Combines the ``len(weights)`` stacked copies of the batch (``scores [copies·B, V]``) and returns the result
    for every copy. Must run before temperature / top-k / top-p (the first stage's ``generate`` puts it first)."""

    def __init__(self, weights: tuple[float, ...]):
        self.weights = tuple(float(w) for w in weights)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        copies = len(self.weights)
        if scores.shape[0] % copies:
            raise ValueError(f"guidance expects {copies} stacked copies of the batch, got {scores.shape[0]} rows")
        stacked = scores.view(copies, scores.shape[0] // copies, -1)
        combined = self.weights[0] * stacked[0]
        for weight, copy in zip(self.weights[1:], stacked[1:]):
            if weight != 0.0:
                combined = combined + weight * copy
        return combined.repeat(copies, 1)


class MetaVoiceInterleaveLogitsProcessor(LogitsProcessor):
    """Keeps the generated stream well formed: at even steps after the prompt only codebook-0 codes or
    end-of-audio, at odd steps only codebook-1 codes (``+codebook_size``). Used by the end-to-end
    `MetaVoiceForTextToSpeech.generate` (a trained model puts ~all its mass there anyway); runs right after guidance.
    """

    def __init__(self, prompt_length: int, codebook_size: int, end_of_audio_token_id: int):
        self.prompt_length = int(prompt_length)
        self.codebook_size = int(codebook_size)
        self.end_of_audio_token_id = int(end_of_audio_token_id)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        step = input_ids.shape[1] - self.prompt_length
        ids = torch.arange(scores.shape[-1], device=scores.device)
        if step % 2 == 0:
            allowed = (ids < self.codebook_size) | (ids == self.end_of_audio_token_id)
        else:
            allowed = (ids >= self.codebook_size) & (ids < 2 * self.codebook_size)
        return scores.masked_fill(~allowed, float("-inf"))
