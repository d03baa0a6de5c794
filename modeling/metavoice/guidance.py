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

__all__ = ["MetaVoiceGuidanceLogitsProcessor", "guidance_weights"]


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
