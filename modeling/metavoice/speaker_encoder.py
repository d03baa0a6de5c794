"""MetaVoice speaker encoder: a GE2E-style LSTM d-vector over 40-band mel partials of 1.6 s."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from transformers.utils import ModelOutput

from ...configuration.metavoice import MetaVoiceSpeakerEncoderConfig
from .first_stage import MetaVoicePreTrainedModel

__all__ = ["MetaVoiceSpeakerEncoder", "MetaVoiceSpeakerEncoderOutput"]


@dataclass
class MetaVoiceSpeakerEncoderOutput(ModelOutput):
    """Output of [`MetaVoiceSpeakerEncoder`].

    Args:
        speaker_embeds (`torch.FloatTensor` of shape `(batch_size, embedding_size)`): L2-normalised mean of the valid
            partials' embeddings.
        partial_embeds (`torch.FloatTensor` of shape `(batch_size, partials, embedding_size)`): L2-normalised
            embedding of every partial (zero for masked partials).
    """

    speaker_embeds: torch.FloatTensor | None = None
    partial_embeds: torch.FloatTensor | None = None


class MetaVoiceSpeakerEncoder(MetaVoicePreTrainedModel):
    r"""``LSTM(mel -> hidden, num_layers)``; the top layer's last hidden state -> ``Linear`` -> ReLU -> L2 norm per
    partial; the utterance embedding is the L2-normalised mean of its partials (the original's `embed_utterance`)."""

    config_class = MetaVoiceSpeakerEncoderConfig
    main_input_name = "speaker_features"
    _no_split_modules = []
    _supports_sdpa = False

    def __init__(self, config: MetaVoiceSpeakerEncoderConfig):
        super().__init__(config)
        self.lstm = nn.LSTM(config.mel_n_channels, config.hidden_size, num_layers=config.num_layers, batch_first=True)
        self.linear = nn.Linear(config.hidden_size, config.embedding_size)
        self.post_init()

    def embed_partials(self, mels: torch.Tensor) -> torch.Tensor:
        """``[N, frames, n_mels]`` -> L2-normalised ``[N, embedding_size]``."""
        _, (hidden, _) = self.lstm(mels.to(self.linear.weight.dtype))
        raw = F.relu(self.linear(hidden[-1]))
        return raw / torch.linalg.vector_norm(raw, dim=-1, keepdim=True).clamp_min(torch.finfo(raw.dtype).tiny)

    def forward(
        self,
        speaker_features: torch.Tensor,
        speaker_features_mask: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> MetaVoiceSpeakerEncoderOutput:
        r"""
        Args:
            speaker_features (`torch.FloatTensor` of shape `(batch_size, partials, frames, n_mels)`): mel power of
                the partials (processor output). A 3-D `(batch_size, frames, n_mels)` tensor is one partial per item.
            speaker_features_mask (`torch.Tensor` of shape `(batch_size, partials)`, *optional*): 1 for real
                partials, 0 for padding (batches of references of different lengths).
        """
        if speaker_features.ndim == 3:
            speaker_features = speaker_features[:, None]
        n_mels = self.config.mel_n_channels
        if speaker_features.ndim != 4 or speaker_features.shape[-1] != n_mels:
            raise ValueError(
                f"speaker_features must be [batch_size, partials, frames, {n_mels}], got {tuple(speaker_features.shape)}"
            )
        batch, partials = speaker_features.shape[:2]
        embeds = self.embed_partials(speaker_features.flatten(0, 1)).view(batch, partials, -1)
        if speaker_features_mask is None:
            mask = torch.ones(batch, partials, dtype=embeds.dtype, device=embeds.device)
        else:
            if tuple(speaker_features_mask.shape) != (batch, partials):
                raise ValueError(
                    f"speaker_features_mask must be [{batch}, {partials}], got {tuple(speaker_features_mask.shape)}"
                )
            mask = speaker_features_mask.to(device=embeds.device, dtype=embeds.dtype)
            if bool((mask.sum(-1) == 0).any()):
                raise ValueError("every item needs at least one valid partial in speaker_features_mask")
        embeds = embeds * mask[..., None]
        mean = embeds.sum(1) / mask.sum(1, keepdim=True)
        speaker = mean / torch.linalg.vector_norm(mean, dim=-1, keepdim=True).clamp_min(torch.finfo(mean.dtype).tiny)
        return MetaVoiceSpeakerEncoderOutput(speaker_embeds=speaker, partial_embeds=embeds)
