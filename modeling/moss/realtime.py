"""MOSS-TTS-Realtime: a Qwen3 backbone reads text + the previous frame, a local transformer writes the next frame.

Every backbone row ``input_ids[b, t]`` holds 17 ids (``1 + n_vq``): column 0 a text token, columns ``1..16`` one id
per codebook (codes ``0..1023``, or pad 1024 / BOS 1025 / EOS 1026). The row's embedding is the sum of the text
embedding and the 16 audio embeddings (padding rows zero). The backbone's final hidden state of row ``t`` is
position 0 of the local transformer, which emits the 16 codes of the frame carried by row ``t + 1``
(see ``realtime_local.py``). There is no text head: text is an input stream (see ``realtime_generation.py`` for the
text lead, the streaming session and the batched non-streaming generation).

State-dict layout (converted from the original by ``codectts.conversion.moss.realtime``)::

    model.embed_tokens.{0..16}         text [V, H] and audio [1027, H] embeddings of the backbone rows
    model.language_model.*             Qwen3Model without its (unused) token embedding
    local_transformer.embed_tokens.{0..14}, .layers.*, .norm   the local transformer
    lm_heads.{0..15}                   [1027, H] head of codebook k (local position k)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from transformers import PreTrainedModel
from transformers.models.qwen3.modeling_qwen3 import Qwen3Model
from transformers.utils import ModelOutput

from ...configuration.moss.realtime import CodecTTSRealtimeConfig
from ..compat import backbone_cache_kwargs, output_cache, resolve_cache
from .realtime_generation import CodecTTSRealtimeGenerationMixin
from .realtime_local import RealtimeLocalTransformer

__all__ = [
    "CodecTTSRealtimeForConditionalGeneration",
    "CodecTTSRealtimeModel",
    "CodecTTSRealtimeOutput",
    "CodecTTSRealtimePreTrainedModel",
]

IGNORE_INDEX = -100


@dataclass
class CodecTTSRealtimeOutput(ModelOutput):
    """Output of [`CodecTTSRealtimeForConditionalGeneration.forward`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*, with `labels`): mean cross-entropy over every labelled
            (row, codebook) cell.
        audio_logits (`torch.FloatTensor` of shape `(R, n_vq, audio_vocab_size)`, *optional*, with `labels`): local
            logits of the ``R`` labelled rows (rows whose 16 audio labels are not all ignored), in (batch, time)
            order; row ``t`` is predicted from the backbone state of row ``t - 1`` (teacher-forced codes).
        last_hidden_state (`torch.FloatTensor` of shape `(batch, seq_len, hidden_size)`): backbone output (post norm).
        cache (`Cache`, *optional*): the backbone KV cache (with ``use_cache``).
        hidden_states (`tuple(torch.FloatTensor)`, *optional*): backbone embeddings + every layer's output.
        attentions (`tuple(torch.FloatTensor)`, *optional*): backbone attention weights.
    """

    loss: torch.FloatTensor | None = None
    audio_logits: torch.FloatTensor | None = None
    last_hidden_state: torch.FloatTensor | None = None
    cache: object | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


class CodecTTSRealtimePreTrainedModel(PreTrainedModel):
    config_class = CodecTTSRealtimeConfig
    config: CodecTTSRealtimeConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = False
    _no_split_modules = ["Qwen3DecoderLayer", "RealtimeLocalDecoderLayer"]
    _skip_keys_device_placement = ["past_key_values", "cache"]
    _supports_sdpa = True


def check_rows(ids: torch.Tensor, config: CodecTTSRealtimeConfig, name: str, allow_ignore: bool = False) -> None:
    """Raise a clear error for a row matrix of the wrong rank/width/dtype or with out-of-range ids."""
    if not isinstance(ids, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(ids).__name__}")
    if ids.ndim != 3 or ids.shape[-1] != config.num_channels:
        raise ValueError(
            f"{name} must have shape [batch, seq_len, 1 + n_vq = {config.num_channels}] (column 0 text, then "
            f"{config.n_vq} codebooks), got {tuple(ids.shape)}"
        )
    if ids.dtype.is_floating_point or ids.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer ids, got dtype {ids.dtype}")
    if ids.numel() == 0 or torch.compiler.is_compiling():
        return
    low = IGNORE_INDEX if allow_ignore else 0
    text, audio = ids[..., 0], ids[..., 1:]
    bad_text = (text >= config.vocab_size) | ((text < 0) & (text != low))
    bad_audio = (audio >= config.audio_vocab_size) | ((audio < 0) & (audio != low))
    if bool(bad_text.any()):
        raise ValueError(f"{name}[..., 0] holds text ids outside [0, {config.vocab_size}): {text[bad_text][:8].tolist()}")
    if bool(bad_audio.any()):
        raise ValueError(
            f"{name}[..., 1:] holds audio ids outside [0, {config.audio_vocab_size}): {audio[bad_audio][:8].tolist()}"
        )


class CodecTTSRealtimeModel(CodecTTSRealtimePreTrainedModel):
    """Row embeddings + Qwen3 backbone: ``input_ids`` [B, T, 17] → hidden states [B, T, H]."""

    def __init__(self, config: CodecTTSRealtimeConfig):
        super().__init__(config)
        hidden = config.hidden_size
        self.embed_tokens = nn.ModuleList(
            [nn.Embedding(config.vocab_size, hidden, padding_idx=config.text_padding_idx)]
            + [
                nn.Embedding(config.audio_vocab_size, hidden, padding_idx=config.audio_pad_code)
                for _ in range(config.n_vq)
            ]
        )
        self.language_model = Qwen3Model(config.text_config)
        # the original stores a backbone token embedding it never uses (rows arrive as summed embeddings)
        self.language_model.embed_tokens = None
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_tokens[0]

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embed_tokens[0] = value

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Sum of the 17 embeddings of every row: [..., 17] → [..., H]."""
        embeds = self.embed_tokens[0](input_ids[..., 0])
        for k in range(1, self.config.num_channels):
            embeds = embeds + self.embed_tokens[k](input_ids[..., k])
        return embeds

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache=None,
        inputs_embeds: torch.FloatTensor | None = None,
        use_cache: bool | None = None,
        past_key_values=None,
        **kwargs,
    ):
        cache = resolve_cache(cache, past_key_values)
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids [B, T, 17] or inputs_embeds [B, T, hidden]")
        if inputs_embeds is None:
            inputs_embeds = self.embed(input_ids)
        return self.language_model(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=use_cache,
            **backbone_cache_kwargs(self.language_model, cache),
            **kwargs,
        )


class CodecTTSRealtimeForConditionalGeneration(CodecTTSRealtimePreTrainedModel, CodecTTSRealtimeGenerationMixin):
    """MOSS-TTS-Realtime compatible streaming text-to-codes model (see the module docstring)."""

    def __init__(self, config: CodecTTSRealtimeConfig):
        super().__init__(config)
        self.model = CodecTTSRealtimeModel(config)
        self.local_transformer = RealtimeLocalTransformer(config.local_config, config.n_vq, config.audio_vocab_size)
        self.lm_heads = nn.ModuleList(
            nn.Linear(config.hidden_size, config.audio_vocab_size, bias=False) for _ in range(config.n_vq)
        )
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.embed_tokens[0]

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.model.embed_tokens[0] = value

    # ------------------------------------------------------------------ teacher-forced local pass
    def teacher_forced_logits(self, backbone_hidden: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """Local logits of whole frames at once.

        Args:
            backbone_hidden: [R, H] backbone states that predict the frames.
            frames: [R, n_vq] the frames' codes (only codebooks ``0..n_vq-2`` are read; -100 reads as the pad).
        Returns:
            [R, n_vq, audio_vocab_size] logits (codebook ``k`` conditioned on the codes of codebooks ``< k``).
        """
        pad = self.config.audio_pad_code
        codes = frames[:, : self.config.n_vq - 1].masked_fill(frames[:, : self.config.n_vq - 1] == IGNORE_INDEX, pad)
        parts = [backbone_hidden]
        for k, embedding in enumerate(self.local_transformer.embed_tokens):
            # functional lookup with padding_idx: the pad row receives no gradient, as in the original training
            parts.append(F.embedding(codes[:, k], embedding.weight, padding_idx=pad))
        local_out = self.local_transformer(torch.stack(parts, dim=1))
        return torch.stack([head(local_out[:, k]) for k, head in enumerate(self.lm_heads)], dim=1)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache=None,
        inputs_embeds: torch.FloatTensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        past_key_values=None,
        num_items_in_batch: int | torch.Tensor | None = None,
        **kwargs,
    ) -> CodecTTSRealtimeOutput | tuple:
        r"""
        Args:
            input_ids (`torch.LongTensor` of shape `(batch, seq_len, 17)`): backbone rows (column 0 text id, columns
                1..16 codebook ids). From `CodecTTSRealtimeProcessor.collate_training_examples` for training.
            attention_mask (`torch.Tensor` of shape `(batch, seq_len)`, *optional*): 0 on padding rows.
            labels (`torch.LongTensor` of shape `(batch, seq_len, 17)`, *optional*): -100 except on assistant audio
                rows (the frame carried by that row; the EOS row labels codebook 0 only). Not shifted: row ``t`` is
                predicted from the backbone state of row ``t - 1`` (row 0 from itself).
            cache / past_key_values: backbone KV cache (either name).
            num_items_in_batch (*optional*): with gradient accumulation, the number of labelled cells of the whole
                batch (the loss is then a sum divided by it; by default the mean over this batch's cells).
        """
        cache = resolve_cache(cache, past_key_values)
        if input_ids is not None:
            check_rows(input_ids, self.config, "input_ids")
        if labels is not None:
            check_rows(labels, self.config, "labels", allow_ignore=True)
            if input_ids is not None and labels.shape != input_ids.shape:
                raise ValueError(f"labels must have the shape of input_ids {tuple(input_ids.shape)}, got {tuple(labels.shape)}")
        if output_hidden_states:
            kwargs["output_hidden_states"] = True
        if output_attentions:
            kwargs["output_attentions"] = True
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            **kwargs,
        )
        hidden = outputs.last_hidden_state
        loss = audio_logits = None
        if labels is not None:
            audio_labels = labels[..., 1:]
            selected = (audio_labels != IGNORE_INDEX).any(dim=-1)  # [B, T]
            previous = torch.cat([hidden[:, :1], hidden[:, :-1]], dim=1)  # state of row max(t - 1, 0)
            targets = audio_labels[selected]  # [R, n_vq], (batch, time) order
            audio_logits = self.teacher_forced_logits(previous[selected], targets)
            flat_logits = audio_logits.float().reshape(-1, audio_logits.shape[-1])
            if num_items_in_batch is None:
                loss = F.cross_entropy(flat_logits, targets.reshape(-1), ignore_index=IGNORE_INDEX)
            else:
                total = F.cross_entropy(flat_logits, targets.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum")
                if isinstance(num_items_in_batch, torch.Tensor):
                    num_items_in_batch = num_items_in_batch.to(total.device)
                loss = total / num_items_in_batch
        output = CodecTTSRealtimeOutput(
            loss=loss,
            audio_logits=audio_logits,
            last_hidden_state=hidden,
            cache=output_cache(outputs),
            hidden_states=getattr(outputs, "hidden_states", None),
            attentions=getattr(outputs, "attentions", None),
        )
        return output if return_dict is not False else output.to_tuple()
