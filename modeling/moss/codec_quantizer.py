"""Residual quantizer with cosine-similarity code search ("RLFQ" in MOSS-Audio-Tokenizer).

Every stage projects the residual to ``codebook_dim``, picks the codebook row with the highest cosine similarity
(both sides L2-normalised) and reconstructs with the *raw* (un-normalised) row projected back. All quantizer math runs
in float32 whatever the dtype of the rest of the model (the model keeps these weights in float32 as well).

The original's 1x1 weight-normalised convolutions are plain linears here (weight norm folded by the converter).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _linear_fp32(x: torch.Tensor, layer: nn.Linear) -> torch.Tensor:
    return F.linear(x.float(), layer.weight.float(), None if layer.bias is None else layer.bias.float())


class CodecCosineQuantizer(nn.Module):
    """One residual stage: ``in_proj`` -> cosine nearest codebook row -> ``out_proj``."""

    def __init__(self, hidden_size: int, codebook_size: int, codebook_dim: int):
        super().__init__()
        self.in_proj = nn.Linear(hidden_size, codebook_dim)
        self.out_proj = nn.Linear(codebook_dim, hidden_size)
        self.codebook = nn.Embedding(codebook_size, codebook_dim)

    def encode(self, residual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``residual`` ``(batch, frames, hidden)`` -> codes ``(batch, frames)`` and their reconstruction."""
        projected = _linear_fp32(residual, self.in_proj)
        query = F.normalize(projected, dim=-1)
        codebook = self.codebook.weight.float()
        normalised_codebook = F.normalize(codebook, dim=-1)
        # Squared euclidean distance of unit vectors (argmin == argmax cosine); first index wins ties.
        distance = (
            query.pow(2).sum(-1, keepdim=True)
            - 2 * query @ normalised_codebook.t()
            + normalised_codebook.pow(2).sum(-1)
        )
        codes = distance.argmin(dim=-1)
        chosen = F.embedding(codes, codebook)
        # The original forms the chosen row as `projected + (row - projected)` (straight-through estimator); in
        # float32 this can differ from `row` by an ulp, which feeds the next stages' residual. Kept for exact parity.
        chosen = projected + (chosen - projected)
        return codes, _linear_fp32(chosen, self.out_proj)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """``codes`` ``(batch, frames)`` -> ``(batch, frames, hidden)``."""
        return _linear_fp32(F.embedding(codes, self.codebook.weight.float()), self.out_proj)


class CodecResidualQuantizer(nn.Module):
    """``input_proj`` -> ``num_quantizers`` residual cosine stages -> ``output_proj`` (all linears with bias)."""

    def __init__(self, config):
        super().__init__()
        hidden = config.quantizer_hidden_size
        self.input_proj = nn.Linear(config.quantizer_input_size, hidden)
        self.layers = nn.ModuleList(
            CodecCosineQuantizer(hidden, config.codebook_size, config.codebook_dim)
            for _ in range(config.num_quantizers)
        )
        self.output_proj = nn.Linear(hidden, config.quantizer_output_size)

    def encode(self, latents: torch.Tensor, frame_mask: torch.Tensor, num_quantizers: int) -> torch.Tensor:
        """Pick codes for ``latents`` ``(batch, frames, channels)``; returns ``(batch, num_quantizers, frames)`` int64.

        Frames where ``frame_mask`` ``(batch, frames)`` is False get a zero residual, hence a content-independent
        code per stage (as in the original); they never influence valid frames.
        """
        mask = frame_mask[..., None].float()
        residual = _linear_fp32(latents, self.input_proj)
        codes = []
        for layer in self.layers[:num_quantizers]:
            stage_codes, reconstruction = layer.encode(residual * mask)
            residual = residual - reconstruction * mask
            codes.append(stage_codes)
        return torch.stack(codes, dim=1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """``codes`` ``(batch, K, frames)`` (K <= num_quantizers, a prefix of the stages) -> ``(batch, frames, out)``."""
        embedding = sum(layer.decode(stage_codes) for layer, stage_codes in zip(self.layers, codes.unbind(1)))
        return _linear_fp32(embedding, self.output_proj)


__all__ = ["CodecCosineQuantizer", "CodecResidualQuantizer"]
