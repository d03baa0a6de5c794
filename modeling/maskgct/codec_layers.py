"""Building blocks shared by MaskGCT's two codecs: weight-normalised convolutions, Snake, the Vocos ConvNeXt
backbone, factorized (L2-normalised lookup) vector quantisation and the "same"-padded ISTFT head.

Parameter names follow the original modules (``alpha``, ``dwconv``, ``pwconv1`` ...) so
the official state dicts load after renaming the legacy weight-norm keys (``weight_g`` / ``weight_v`` ->
``parametrizations.weight.original0`` / ``original1``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def WNConv1d(in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, bias=True) -> nn.Conv1d:
    """Conv1d with weight normalisation (``W = g * v / ||v||``, norm over every dim but the first), as PyTorch's
    parametrization: parameters ``parametrizations.weight.original0`` (g) / ``original1`` (v). The original's
    legacy ``weight_g`` / ``weight_v`` keys are renamed by the converter (and by transformers' legacy mapping)."""
    conv = nn.Conv1d(
        in_channels, out_channels, kernel_size, stride=stride, padding=padding, dilation=dilation, bias=bias
    )
    return nn.utils.parametrizations.weight_norm(conv)


class Snake1d(nn.Module):
    """x + 1/(alpha + 1e-9) * sin(alpha x)^2, one alpha per channel."""

    def __init__(self, channels: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x = x.reshape(shape[0], shape[1], -1)
        x = x + (self.alpha + 1e-9).reciprocal() * torch.sin(self.alpha * x).pow(2)
        return x.reshape(shape)


class ConvNeXtBlock(nn.Module):
    def __init__(self, dim: int, intermediate_dim: int, layer_scale_init_value: float = 1.0):
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, intermediate_dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(intermediate_dim, dim)
        self.gamma = nn.Parameter(layer_scale_init_value * torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, T]
        residual = x
        x = self.dwconv(x).transpose(1, 2)
        x = self.pwconv2(self.act(self.pwconv1(self.norm(x))))
        x = self.gamma * x
        return residual + x.transpose(1, 2)


class VocosBackbone(nn.Module):
    """Conv1d(k7) -> LayerNorm -> N ConvNeXt blocks -> LayerNorm; [B, C_in, T] -> [B, T, dim]."""

    def __init__(self, input_channels: int, dim: int, intermediate_dim: int, num_layers: int):
        super().__init__()
        self.embed = nn.Conv1d(input_channels, dim, kernel_size=7, padding=3)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.convnext = nn.ModuleList(
            [ConvNeXtBlock(dim, intermediate_dim, 1.0 / num_layers) for _ in range(num_layers)]
        )
        self.final_layer_norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x.to(self.embed.weight.dtype))
        x = self.norm(x.transpose(1, 2)).transpose(1, 2)
        for block in self.convnext:
            x = block(x)
        return self.final_layer_norm(x.transpose(1, 2))


class FactorizedVectorQuantize(nn.Module):
    """Project to ``codebook_dim``, pick the nearest code by cosine (L2-normalised rows, ties -> first index),
    emit the un-normalised code projected back (quirk Q-C5)."""

    def __init__(self, input_dim: int, codebook_size: int, codebook_dim: int):
        super().__init__()
        self.codebook_size = codebook_size
        self.in_project = WNConv1d(input_dim, codebook_dim, kernel_size=1)
        self.out_project = WNConv1d(codebook_dim, input_dim, kernel_size=1)
        self.codebook = nn.Embedding(codebook_size, codebook_dim)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, T] -> [B, D, T]."""
        return self.out_project(self.codebook(codes).transpose(1, 2))

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z_e = self.in_project(z)
        flat = F.normalize(z_e.transpose(1, 2).reshape(-1, z_e.shape[1]))
        codebook = F.normalize(self.codebook.weight)
        dist = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ codebook.t() + codebook.pow(2).sum(1, keepdim=True).t()
        codes = (-dist).max(1)[1].reshape(z_e.shape[0], z_e.shape[2])
        z_q = self.codebook(codes).transpose(1, 2)
        # straight-through estimator, written as the original does (same rounding of the forward value)
        z_q = z_e + (z_q - z_e).detach()
        return self.out_project(z_q), codes


class ResidualVectorQuantize(nn.Module):
    """Stack of factorized VQs on successive residuals (``quantizers.{i}``)."""

    def __init__(self, input_dim: int, num_quantizers: int, codebook_size: int, codebook_dim: int):
        super().__init__()
        self.num_quantizers = num_quantizers
        self.quantizers = nn.ModuleList(
            [FactorizedVectorQuantize(input_dim, codebook_size, codebook_dim) for _ in range(num_quantizers)]
        )

    def forward(self, z: torch.Tensor, n_quantizers: int | None = None):
        """z [B, D, T] -> (quantized [B, D, T], codes [n, B, T], per-layer outputs [n, B, D, T])."""
        n = self.num_quantizers if n_quantizers is None else n_quantizers
        z = z.to(self.quantizers[0].codebook.weight.dtype)  # code search in the quantizer's (float32) precision
        residual, quantized = z, torch.zeros_like(z)
        codes, outputs = [], []
        for quantizer in self.quantizers[:n]:
            out, idx = quantizer(residual)
            quantized = quantized + out
            residual = residual - out
            codes.append(idx)
            outputs.append(out)
        return quantized, torch.stack(codes), torch.stack(outputs)

    def vq2emb(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [n, B, T] (n <= num_quantizers) -> sum of the first n code projections [B, D, T]."""
        emb = None
        for quantizer, idx in zip(self.quantizers, codes):
            out = quantizer.decode(idx)
            emb = out if emb is None else emb + out
        return emb


class ISTFTHead(nn.Module):
    """Linear -> (log-magnitude, phase) -> inverse STFT with "same" padding (length T * hop)."""

    def __init__(self, dim: int, n_fft: int, hop_length: int):
        super().__init__()
        self.n_fft, self.hop_length = n_fft, hop_length
        self.out = nn.Linear(dim, n_fft + 2)
        # the original stores this window in its checkpoint; it is recomputed here (non-persistent)
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, T, dim] -> [B, T * hop]
        x = self.out(x).transpose(1, 2)
        mag, phase = x.chunk(2, dim=1)
        mag = torch.clip(torch.exp(mag), max=1e2)
        spec = mag * (torch.cos(phase) + 1j * torch.sin(phase))
        return self.istft(spec)

    def istft(self, spec: torch.Tensor) -> torch.Tensor:
        pad = (self.n_fft - self.hop_length) // 2
        frames = spec.shape[-1]
        window = self.window.to(spec.real.dtype)
        ifft = torch.fft.irfft(spec, self.n_fft, dim=1, norm="backward") * window[None, :, None]
        output_size = (frames - 1) * self.hop_length + self.n_fft
        y = F.fold(ifft, output_size=(1, output_size), kernel_size=(1, self.n_fft), stride=(1, self.hop_length))
        y = y[:, 0, 0, pad:-pad]
        window_sq = window.square().expand(1, frames, -1).transpose(1, 2)
        envelope = F.fold(
            window_sq, output_size=(1, output_size), kernel_size=(1, self.n_fft), stride=(1, self.hop_length)
        ).squeeze()[pad:-pad]
        return y / envelope
