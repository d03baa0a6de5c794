"""MetaVoice second stage: a non-causal transformer that predicts EnCodec codebooks 2..7 at every position from
text + codebooks 0/1, in one forward pass."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from transformers.utils import ModelOutput

from ...configuration.metavoice import MetaVoiceSecondStageConfig
from ..token_selection import ChannelSampling, select_tokens
from .first_stage import MetaVoicePreTrainedModel
from .layers import MetaVoiceDecoderLayer, MetaVoiceLayerNorm

__all__ = ["MetaVoiceSecondStageModel", "MetaVoiceSecondStageOutput"]



def second_stage_sampling(do_sample: bool, temperature: float, top_k: int | None) -> ChannelSampling:
    """The original's one-shot sampling: temperature, top-k (ties with the k-th kept), ``torch.multinomial``."""
    return ChannelSampling(
        do_sample=do_sample, temperature=temperature, top_k=None if top_k is None else int(top_k),
        top_k_ties="keep", draw_method="multinomial",
    )

@dataclass
class MetaVoiceSecondStageOutput(ModelOutput):
    """Output of [`MetaVoiceSecondStageModel`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*): mean over heads of each head's mean cross-entropy
            (labels -100 ignored).
        logits (`tuple(torch.FloatTensor)`): `num_output_heads` tensors `(batch_size, block_size, output_vocab_size)`;
            head `i` predicts codebook `i + 2`.
    """

    loss: torch.FloatTensor | None = None
    logits: tuple[torch.FloatTensor, ...] | None = None


class MetaVoiceSecondStageModel(MetaVoicePreTrainedModel):
    r"""Encoder-only transformer (LayerNorm without bias, exact GELU MLP, no causal and no padding mask) over two
    summed input streams plus learned positions and the speaker term; six untied heads.

    The checkpoint was trained on inputs padded with the pad code to exactly `block_size` positions and attends to
    the padding, so inputs shorter than `block_size` are padded here (results equal the original's only then).
    """

    config_class = MetaVoiceSecondStageConfig
    main_input_name = "input_ids"

    def __init__(self, config: MetaVoiceSecondStageConfig):
        super().__init__(config)
        self.embed_tokens = nn.ModuleList(nn.Embedding(v, config.hidden_size) for v in config.vocab_sizes)
        self.embed_positions = nn.Embedding(config.block_size, config.hidden_size)
        self.speaker_proj = nn.Linear(config.speaker_embedding_dim, config.hidden_size, bias=False)
        self.layers = nn.ModuleList(
            MetaVoiceDecoderLayer(config, i, causal=False) for i in range(config.num_hidden_layers)
        )
        self.norm = MetaVoiceLayerNorm(config.hidden_size, config.layer_norm_eps)
        self.lm_heads = nn.ModuleList(
            nn.Linear(config.hidden_size, config.output_vocab_size, bias=False) for _ in range(config.num_output_heads)
        )
        self.post_init()

    def get_input_embeddings(self):
        return self.embed_tokens[0]

    def pad_to_block(self, input_ids: torch.LongTensor) -> torch.LongTensor:
        """Right-pad ``[B, streams, T]`` with the pad code to ``block_size`` (error when longer)."""
        config = self.config
        if input_ids.ndim != 3 or input_ids.shape[1] != len(config.vocab_sizes):
            raise ValueError(
                f"input_ids must be [batch_size, {len(config.vocab_sizes)}, length], got {tuple(input_ids.shape)}"
            )
        length = input_ids.shape[-1]
        if length > config.block_size:
            raise ValueError(f"the second stage takes at most block_size={config.block_size} positions, got {length}")
        if length < config.block_size:
            input_ids = F.pad(input_ids, (0, config.block_size - length), value=config.pad_token_id)
        return input_ids

    def forward(
        self,
        input_ids: torch.LongTensor,
        speaker_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> MetaVoiceSecondStageOutput:
        r"""
        Args:
            input_ids (`torch.LongTensor` of shape `(batch_size, 2, length <= block_size)`): row 0 = text ids
                (offset `text_offset`), end-of-text, codebook-0 codes, pad; row 1 = pad under the text, codebook-1
                codes, pad. Padded to `block_size` with the pad code.
            speaker_embeds (`torch.FloatTensor` of shape `(batch_size, speaker_embedding_dim)`, *optional*).
            labels (`torch.LongTensor` of shape `(batch_size, num_output_heads, block_size)`, *optional*): codebook
                2..7 targets per position (-100 ignored).
        """
        input_ids = self.pad_to_block(input_ids)
        for stream, vocab in enumerate(self.config.vocab_sizes):
            ids = input_ids[:, stream]
            if bool((ids < 0).any() or (ids >= vocab).any()):
                raise ValueError(f"input_ids row {stream} has ids outside [0, {vocab})")
        batch, _, length = input_ids.shape
        hidden = self.embed_positions(torch.arange(length, device=input_ids.device))[None]
        for stream, embed in enumerate(self.embed_tokens):
            hidden = embed(input_ids[:, stream]) + hidden
        if speaker_embeds is not None:
            if speaker_embeds.shape != (batch, self.config.speaker_embedding_dim):
                raise ValueError(
                    f"speaker_embeds must be [{batch}, {self.config.speaker_embedding_dim}], "
                    f"got {tuple(speaker_embeds.shape)}"
                )
            hidden = hidden + self.speaker_proj(speaker_embeds.to(hidden.dtype))[:, None]
        for layer in self.layers:
            hidden = layer(hidden, None)
        hidden = self.norm(hidden)
        logits = tuple(head(hidden) for head in self.lm_heads)
        loss = None
        if labels is not None:
            labels = labels.to(hidden.device)
            if labels.shape != (batch, len(logits), length):
                raise ValueError(f"labels must be [{batch}, {len(logits)}, {length}], got {tuple(labels.shape)}")
            losses = [
                F.cross_entropy(head_logits.float().reshape(-1, head_logits.shape[-1]), labels[:, i].reshape(-1))
                for i, head_logits in enumerate(logits)
            ]
            loss = torch.stack(losses).mean()
        return MetaVoiceSecondStageOutput(loss=loss, logits=logits)

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.LongTensor,
        speaker_embeds: torch.Tensor | None = None,
        do_sample: bool = True,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.LongTensor:
        r"""One forward, then one draw per head and position (the original's only sampler: temperature, top-k,
        multinomial; `do_sample=False` = argmax).

        Returns:
            `torch.LongTensor` of shape `(batch_size, num_output_heads, block_size)`.
        """
        if do_sample and not temperature > 0:
            raise ValueError(f"temperature must be > 0 when sampling, got {temperature} (use do_sample=False)")
        if top_k is not None and int(top_k) < 1:
            raise ValueError(f"top_k must be >= 1 or None, got {top_k}")
        logits = torch.stack(self(input_ids, speaker_embeds=speaker_embeds).logits, dim=1).float()  # [B, H, T, V]
        return select_tokens(logits, second_stage_sampling(do_sample, temperature, top_k), generator=generator)
