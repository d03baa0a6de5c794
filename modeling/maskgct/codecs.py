"""MaskGCT's two codecs as transformers models.

* `MaskGctSemanticCodecModel` (RepCodec): normalised w2v-bert-2.0 features [B, T, H] -> one semantic token per
  50 Hz frame. It also keeps the feature normalisation statistics (``feature_mean`` / ``feature_var``).
* `MaskGctAcousticCodecModel`: 24 kHz waveform -> DAC-style encoder -> 12-layer factorized RVQ codes, and codes ->
  Vocos (ConvNeXt + ISTFT) waveform.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from ...configuration.maskgct import MaskGctAcousticCodecConfig, MaskGctSemanticCodecConfig
from .codec_layers import ISTFTHead, ResidualVectorQuantize, Snake1d, VocosBackbone, WNConv1d


def _check_codes(codes: torch.Tensor, codebook_size: int, name: str) -> None:
    if codes.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise TypeError(f"{name} must be an integer tensor, got {codes.dtype}")
    if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= codebook_size):
        raise ValueError(
            f"{name} out of range: values must be in [0, {codebook_size}), got [{int(codes.min())}, {int(codes.max())}]"
        )


class _CodecPreTrainedModel(PreTrainedModel):
    main_input_name = "input_values"
    supports_gradient_checkpointing = False
    # nearest-code search flips near-ties in bf16/fp16: the quantizers stay float32 whatever the model's dtype
    _keep_in_fp32_modules_strict = ["quantizer"]

    @torch.no_grad()
    def _init_weights(self, module):
        # weights come from checkpoints; fresh models keep the PyTorch default initialisation of each layer.
        # The ISTFT window is a non-persistent buffer: recompute it (it is not in the checkpoint)
        if isinstance(module, ISTFTHead):
            init.copy_(module.window, torch.hann_window(module.n_fft, device=module.window.device))


# --------------------------------------------------------------------------------------------------- semantic


@dataclass
class MaskGctSemanticCodecOutput(ModelOutput):
    """Output of `MaskGctSemanticCodecModel.forward`.

    Args:
        reconstruction: decoder output [B, T, H] (reconstructed features).
        codes: semantic tokens [B, T].
        quantized: quantized latent [B, T, H].
    """

    reconstruction: torch.FloatTensor | None = None
    codes: torch.LongTensor | None = None
    quantized: torch.FloatTensor | None = None


class MaskGctSemanticCodecModel(_CodecPreTrainedModel):
    """RepCodec semantic tokenizer (keys ``encoder.{0,1}``, ``decoder.{0,1}``, ``quantizer.quantizers.0``)."""

    config_class = MaskGctSemanticCodecConfig
    config: MaskGctSemanticCodecConfig
    main_input_name = "features"

    def __init__(self, config: MaskGctSemanticCodecConfig):
        super().__init__(config)
        h = config.hidden_size
        self.encoder = nn.Sequential(
            VocosBackbone(h, config.vocos_dim, config.vocos_intermediate_dim, config.vocos_num_layers),
            nn.Linear(config.vocos_dim, h),
        )
        self.decoder = nn.Sequential(
            VocosBackbone(h, config.vocos_dim, config.vocos_intermediate_dim, config.vocos_num_layers),
            nn.Linear(config.vocos_dim, h),
        )
        self.quantizer = ResidualVectorQuantize(h, config.num_quantizers, config.codebook_size, config.codebook_dim)
        # w2v-bert feature statistics: features are normalised as (h - mean) / sqrt(var) (no epsilon, quirk Q-F2)
        self.register_buffer("feature_mean", torch.zeros(h))
        self.register_buffer("feature_var", torch.ones(h))
        self.post_init()

    def normalize_features(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return (hidden_states - self.feature_mean) / torch.sqrt(self.feature_var)

    def _check_features(self, features: torch.Tensor) -> None:
        if features.dim() != 3 or features.shape[-1] != self.config.hidden_size:
            raise ValueError(
                f"features must be [batch, frames, {self.config.hidden_size}], got {tuple(features.shape)}"
            )

    def quantize(self, features: torch.Tensor) -> tuple[torch.LongTensor, torch.FloatTensor]:
        """Normalised features [B, T, H] -> (codes [B, T], quantized [B, T, H]).

        With ``num_quantizers > 1`` the codes are [n, B, T] (as the original)."""
        self._check_features(features)
        latent = self.encoder(features.transpose(1, 2).to(self.dtype)).transpose(1, 2)
        quantized, codes, _ = self.quantizer(latent)
        if codes.shape[0] == 1:
            codes = codes[0]
        return codes, quantized.transpose(1, 2)

    def vq2emb(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [n, B, T] -> quantized embedding [B, H, T]."""
        _check_codes(codes, self.config.codebook_size, "codes")
        return self.quantizer.vq2emb(codes)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, T] (or [n, B, T]) -> reconstructed features [B, T, H]."""
        if codes.dim() == 2:
            codes = codes[None]
        return self.decoder(self.vq2emb(codes))

    def forward(self, features: torch.Tensor, return_dict: bool | None = None) -> MaskGctSemanticCodecOutput:
        self._check_features(features)
        latent = self.encoder(features.transpose(1, 2).to(self.dtype)).transpose(1, 2)
        quantized, codes, _ = self.quantizer(latent)
        reconstruction = self.decoder(quantized)
        return MaskGctSemanticCodecOutput(
            reconstruction=reconstruction,
            codes=codes[0] if codes.shape[0] == 1 else codes,
            quantized=quantized.transpose(1, 2),
        )


# --------------------------------------------------------------------------------------------------- acoustic


class _ResidualUnit(nn.Module):
    def __init__(self, dim: int, dilation: int):
        super().__init__()
        pad = ((7 - 1) * dilation) // 2
        self.block = nn.Sequential(
            Snake1d(dim), WNConv1d(dim, dim, 7, dilation=dilation, padding=pad), Snake1d(dim), WNConv1d(dim, dim, 1)
        )

    def forward(self, x):
        y = self.block(x)
        pad = (x.shape[-1] - y.shape[-1]) // 2
        if pad > 0:
            x = x[..., pad:-pad]
        return x + y


class _EncoderBlock(nn.Module):
    def __init__(self, dim: int, stride: int):
        super().__init__()
        self.block = nn.Sequential(
            _ResidualUnit(dim // 2, 1),
            _ResidualUnit(dim // 2, 3),
            _ResidualUnit(dim // 2, 9),
            Snake1d(dim // 2),
            WNConv1d(dim // 2, dim, kernel_size=2 * stride, stride=stride, padding=math.ceil(stride / 2)),
        )

    def forward(self, x):
        return self.block(x)


class MaskGctAcousticEncoder(nn.Module):
    """DAC-style encoder ``block.*``: [B, 1, L] -> [B, latent_dim, T]."""

    def __init__(self, config: MaskGctAcousticCodecConfig):
        super().__init__()
        d = config.encoder_dim
        blocks: list[nn.Module] = [WNConv1d(1, d, kernel_size=7, padding=3)]
        for stride in config.encoder_rates:
            d *= 2
            blocks.append(_EncoderBlock(d, stride))
        blocks += [Snake1d(d), WNConv1d(d, config.latent_dim, kernel_size=3, padding=1)]
        if config.use_tanh:
            blocks.append(nn.Tanh())
        self.block = nn.Sequential(*blocks)

    def forward(self, x):
        return self.block(x)


class _Vocos(nn.Module):
    def __init__(self, config: MaskGctAcousticCodecConfig):
        super().__init__()
        self.backbone = VocosBackbone(
            config.latent_dim, config.vocos_dim, config.vocos_intermediate_dim, config.vocos_num_layers
        )
        self.head = ISTFTHead(config.vocos_dim, config.n_fft, config.hop_length)

    def forward(self, x):  # [B, D, T] -> [B, T * hop]
        return self.head(self.backbone(x))


class MaskGctAcousticDecoder(nn.Module):
    """RVQ (``quantizer.*``) + Vocos (``model.backbone.*``, ``model.head.*``)."""

    def __init__(self, config: MaskGctAcousticCodecConfig):
        super().__init__()
        self.quantizer = ResidualVectorQuantize(
            config.latent_dim, config.num_quantizers, config.codebook_size, config.codebook_dim
        )
        self.model = _Vocos(config)


@dataclass
class MaskGctAcousticCodecEncoderOutput(ModelOutput):
    """Args:
    audio_codes: RVQ codes [B, T, n] (n = ``num_quantizers`` used).
    quantized: sum of the quantized layers [B, latent_dim, T].
    """

    audio_codes: torch.LongTensor | None = None
    quantized: torch.FloatTensor | None = None


@dataclass
class MaskGctAcousticCodecDecoderOutput(ModelOutput):
    """Args:
    audio_values: waveform [B, T * hop_length] at ``config.sampling_rate``.
    """

    audio_values: torch.FloatTensor | None = None


@dataclass
class MaskGctAcousticCodecOutput(ModelOutput):
    audio_codes: torch.LongTensor | None = None
    audio_values: torch.FloatTensor | None = None


class MaskGctAcousticCodecModel(_CodecPreTrainedModel):
    """Acoustic codec: ``encode`` (waveform -> codes) and ``decode`` (codes -> waveform).

    Frames: 50 Hz at 24 kHz (hop 480). The encoder does not pad the waveform: T = successive strided lengths
    (quirk Q-C4); the decoded length is T * hop.
    """

    config_class = MaskGctAcousticCodecConfig
    config: MaskGctAcousticCodecConfig

    def __init__(self, config: MaskGctAcousticCodecConfig):
        super().__init__(config)
        self.encoder = MaskGctAcousticEncoder(config)
        self.decoder = MaskGctAcousticDecoder(config)
        self.post_init()

    def _num_quantizers(self, n: int | None, name: str = "num_quantizers") -> int:
        if n is None:
            return self.config.num_quantizers
        if not 1 <= int(n) <= self.config.num_quantizers:
            raise ValueError(f"{name} must be in 1..{self.config.num_quantizers}, got {n}")
        return int(n)

    def num_frames(self, num_samples: int) -> int:
        """Code frames the encoder produces for ``num_samples`` samples."""
        t = num_samples
        for s in self.config.encoder_rates:
            t = (t + 2 * math.ceil(s / 2) - 2 * s) // s + 1
        return t

    def encode(
        self, audio: torch.Tensor, num_quantizers: int | None = None, return_dict: bool | None = None
    ) -> MaskGctAcousticCodecEncoderOutput:
        """Waveform [B, L] (or [B, 1, L]) at 24 kHz -> ``audio_codes`` [B, T, n]."""
        if not torch.is_tensor(audio) or not audio.is_floating_point():
            raise TypeError("audio must be a float tensor [batch, samples]")
        if audio.dim() == 3 and audio.shape[1] == 1:
            audio = audio[:, 0]
        if audio.dim() != 2:
            raise ValueError(f"audio must be [batch, samples], got shape {tuple(audio.shape)}")
        n = self._num_quantizers(num_quantizers)
        if self.num_frames(audio.shape[-1]) < 1:
            raise ValueError(f"audio is too short: {audio.shape[-1]} samples give no code frame")
        latent = self.encoder(audio[:, None].to(self.dtype))
        quantized, codes, _ = self.decoder.quantizer(latent, n_quantizers=n)
        return MaskGctAcousticCodecEncoderOutput(audio_codes=codes.permute(1, 2, 0), quantized=quantized)

    def vq2emb(self, audio_codes: torch.Tensor) -> torch.Tensor:
        """codes [B, T, Q] -> summed code embeddings [B, latent_dim, T]."""
        if audio_codes.dim() != 3:
            raise ValueError(f"audio_codes must be [batch, frames, quantizers], got {tuple(audio_codes.shape)}")
        self._num_quantizers(audio_codes.shape[-1], "audio_codes.shape[-1] (number of quantizers)")
        _check_codes(audio_codes, self.config.codebook_size, "audio_codes")
        return self.decoder.quantizer.vq2emb(audio_codes.permute(2, 0, 1))

    def decode(self, audio_codes: torch.Tensor, return_dict: bool | None = None) -> MaskGctAcousticCodecDecoderOutput:
        """Codes [B, T, Q] (Q <= num_quantizers: the sum of the first Q layers) -> ``audio_values`` [B, T * hop]."""
        if audio_codes.dim() == 3 and audio_codes.shape[1] == 0:
            raise ValueError("audio_codes has no frame")
        return MaskGctAcousticCodecDecoderOutput(audio_values=self.decoder.model(self.vq2emb(audio_codes)))

    def forward(self, input_values: torch.Tensor, num_quantizers: int | None = None) -> MaskGctAcousticCodecOutput:
        codes = self.encode(input_values, num_quantizers=num_quantizers).audio_codes
        return MaskGctAcousticCodecOutput(audio_codes=codes, audio_values=self.decode(codes).audio_values)
