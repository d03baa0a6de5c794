"""MOSS-TTS-Local 1.0 compatible generator: Qwen3 backbone over summed channel embeddings + a local transformer.

One row of ``input_ids`` [B, T, 1 + N] is one codec frame (channel 0 text, channels 1..N RVQ codes). The backbone
produces one latent per row; the local transformer then predicts the next row channel by channel:

    local position 0     = adapter_in(backbone latent)          -> head 0 predicts the next text token
    local position k + 1 = adapter_in(embedding_k(token of channel k)) -> head k + 1 predicts channel k + 1

where every head ``c`` is ``lm_heads[c](head_norms[c](local_output_adapters[c](local hidden)))``. Training uses
teacher forcing (the label row feeds the local positions); generation (``generation_local.py``) feeds back its own
choices with a local KV cache.

State-dict layout (converted from the original by ``codectts.conversion.moss.local``):

    model.embed_tokens.{c}              channel embeddings (c = 0 text [V, H], c >= 1 audio [A, H])
    model.language_model.*              Qwen3Model without its (unused) token embedding
    local_transformer.*                 see ``local_transformer.py``
    local_input_adapter.*               SwiGLU H -> adapter -> local width, shared by all local positions
    local_output_adapters.{c}.*         SwiGLU local width -> adapter -> H, one per channel
    head_norms.{c}.weight               RMSNorm without float32 upcast (as trained)
    lm_heads.{c}.weight                 [V, H] for c = 0, [A, H] for audio channels
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from transformers import PreTrainedModel
from transformers.cache_utils import Cache
from transformers.modeling_outputs import BaseModelOutputWithPast
from transformers.models.qwen3.modeling_qwen3 import Qwen3Model
from transformers.utils import ModelOutput

from ...configuration.moss.local import CodecTTSLocalConfig
from ..compat import backbone_cache_kwargs, output_cache, resolve_cache
from ..quantization import embedding_lookup
from .generation_local import CodecTTSLocalGenerationMixin
from .local_transformer import CodecTTSLocalTransformer

IGNORE_INDEX = -100


@dataclass
class CodecTTSLocalOutputWithPast(ModelOutput):
    """Output of [`CodecTTSLocalForConditionalGeneration.forward`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*, returned with `labels`):
            ``sum_c w_c * channel_losses[c] / sum_c w_c`` (default weights all 1).
        channel_losses (`torch.FloatTensor` of shape `(1 + n_vq,)`, *optional*, returned with `labels`):
            mean cross-entropy of every channel over its non-ignored targets (float32).
        logits (`torch.FloatTensor` of shape `(batch, seq_len, vocab_size)`):
            text logits for the next row (local position 0; no teacher forcing needed).
        audio_logits (`torch.FloatTensor` of shape `(batch, seq_len, n_vq, audio_vocab_size + 1)`, *optional*):
            codebook logits, only with `labels` (they depend on the teacher-forced tokens of the earlier channels).
            The pad-code logit is returned as computed (generation masks it).
        backbone_last_hidden_state (`torch.FloatTensor` of shape `(batch, seq_len, hidden_size)`):
            the post-norm backbone latent of every row.
        local_last_hidden_state (`torch.FloatTensor` of shape `(batch, seq_len, positions, local_hidden_size)`):
            local transformer output (after its final norm); ``positions`` is ``1 + n_vq`` with labels, else 1.
        cache (`Cache`, *optional*): backbone cache (also readable as ``past_key_values``).
        hidden_states (`tuple(torch.FloatTensor)`, *optional*): backbone hidden states (embeddings, every layer;
            the last entry is post-norm).
        attentions (`tuple(torch.FloatTensor)`, *optional*): backbone attention weights.
    """

    loss: torch.FloatTensor | None = None
    channel_losses: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    audio_logits: torch.FloatTensor | None = None
    backbone_last_hidden_state: torch.FloatTensor | None = None
    local_last_hidden_state: torch.FloatTensor | None = None
    cache: Cache | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None

    @property
    def past_key_values(self) -> Cache | None:
        """The former name of ``cache`` (read-only)."""
        return self.cache


class CodecTTSLocalAdapter(nn.Module):
    """SwiGLU ``down(silu(gate(x)) * up(x))`` without biases, between the backbone and local widths."""

    def __init__(self, in_features: int, hidden_features: int, out_features: int):
        super().__init__()
        self.gate_proj = nn.Linear(in_features, hidden_features, bias=False)
        self.up_proj = nn.Linear(in_features, hidden_features, bias=False)
        self.down_proj = nn.Linear(hidden_features, out_features, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class CodecTTSLocalHeadRMSNorm(nn.Module):
    """RMSNorm computed in the working dtype (no float32 upcast), as the checkpoints' pre-head norms were trained."""

    def __init__(self, hidden_size: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.variance_epsilon = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon) * self.weight


class CodecTTSLocalPreTrainedModel(PreTrainedModel):
    config_class = CodecTTSLocalConfig
    config: CodecTTSLocalConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    _no_split_modules = ["Qwen3DecoderLayer", "CodecTTSLocalDecoderLayer"]
    _skip_keys_device_placement = ["cache", "past_key_values"]
    _supports_sdpa = True
    # the backbone's Qwen3 decoder layers recompute their activations (tests/moss/test_finetune.py)
    supports_gradient_checkpointing = True


def check_token_matrix(ids: torch.Tensor, config: CodecTTSLocalConfig, name: str, allow_ignore: bool = False) -> None:
    """Raise a clear error for a token matrix of the wrong rank/width/dtype or with out-of-range ids."""
    if not isinstance(ids, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(ids).__name__}")
    if ids.ndim != 3 or ids.shape[-1] != config.num_channels:
        raise ValueError(
            f"{name} must have shape [batch, seq_len, 1 + n_vq = {config.num_channels}] (channel 0 text, then "
            f"{config.n_vq} codebooks), got {tuple(ids.shape)}"
        )
    if ids.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8, torch.int8):
        raise TypeError(f"{name} must hold integer token ids, got dtype {ids.dtype}")
    if ids.numel() == 0 or torch.compiler.is_compiling():
        return
    text, audio = ids[..., 0], ids[..., 1:]
    low = IGNORE_INDEX if allow_ignore else 0
    bad_text = (text >= config.vocab_size) | ((text < 0) & (text != low))
    bad_audio = (audio > config.audio_pad_code) | ((audio < 0) & (audio != low))
    if bool(bad_text.any()):
        raise ValueError(f"{name}[..., 0] holds text ids outside [0, {config.vocab_size}): {text[bad_text][:8].tolist()}")
    if bool(bad_audio.any()):
        raise ValueError(
            f"{name}[..., 1:] holds audio codes outside [0, {config.audio_pad_code}] (pad = {config.audio_pad_code}): "
            f"{audio[bad_audio][:8].tolist()}"
        )


def resolve_n_vq(n_vq_for_inference: int | None, config: CodecTTSLocalConfig) -> int:
    if n_vq_for_inference is None:
        return config.n_vq
    if isinstance(n_vq_for_inference, bool) or not isinstance(n_vq_for_inference, int):
        raise TypeError(f"n_vq_for_inference must be an int, got {n_vq_for_inference!r}")
    if not 1 <= n_vq_for_inference <= config.n_vq:
        raise ValueError(f"n_vq_for_inference must be in [1, n_vq = {config.n_vq}], got {n_vq_for_inference}")
    return n_vq_for_inference


class CodecTTSLocalModel(CodecTTSLocalPreTrainedModel):
    """Channel embeddings + Qwen3 backbone: ``input_ids`` [B, T, 1 + N] → one latent per row [B, T, H]."""

    def __init__(self, config: CodecTTSLocalConfig):
        super().__init__(config)
        hidden = config.hidden_size
        if config.pad_token_id is not None and not 0 <= config.pad_token_id < config.vocab_size:
            raise ValueError(
                f"pad_token_id {config.pad_token_id} is outside the text vocabulary (vocab_size {config.vocab_size}): "
                "pass the special token ids of your tokenizer (pad_token_id=..., audio_start_token_id=..., ...) to the "
                "config"
            )
        self.embed_tokens = nn.ModuleList(
            [nn.Embedding(config.vocab_size, hidden, padding_idx=config.pad_token_id)]
            + [nn.Embedding(config.audio_vocab_size + 1, hidden, padding_idx=config.audio_pad_code) for _ in range(config.n_vq)]
        )
        self.language_model = Qwen3Model(config.text_config)
        # The original checkpoint stores a backbone token embedding that is never used (inputs always arrive as
        # summed channel embeddings); dropping it saves a [V, H] matrix.
        self.language_model.embed_tokens = None
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_tokens[0]

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embed_tokens[0] = value

    def embed(self, input_ids: torch.Tensor, n_vq_for_inference: int | None = None) -> torch.Tensor:
        """Sum of the channel embeddings of channels ``0..K`` (``K = n_vq_for_inference``, default all); [B, T, H].

        Channels beyond ``K`` are ignored (what "variable bitrate" inference means for this model).
        """
        k = resolve_n_vq(n_vq_for_inference, self.config)
        embeds = embedding_lookup(self.embed_tokens[0], input_ids[..., 0])
        for c in range(1, k + 1):
            embeds = embeds + embedding_lookup(self.embed_tokens[c], input_ids[..., c])
        return embeds

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        use_cache: bool | None = None,
        n_vq_for_inference: int | None = None,
        past_key_values: Cache | None = None,
        cache_position: torch.LongTensor | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPast:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids [B, T, 1 + n_vq] or inputs_embeds [B, T, hidden]")
        if inputs_embeds is None:
            inputs_embeds = self.embed(input_ids, n_vq_for_inference)
        cache = resolve_cache(cache, past_key_values)
        return self.language_model(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=use_cache,
            **backbone_cache_kwargs(self.language_model, cache, cache_position),
            **kwargs,
        )


class CodecTTSLocalForConditionalGeneration(CodecTTSLocalPreTrainedModel, CodecTTSLocalGenerationMixin):
    """MOSS-TTS-Local 1.0 compatible text-to-codes generator (see the module docstring for the architecture)."""

    def __init__(self, config: CodecTTSLocalConfig):
        super().__init__(config)
        hidden, local, adapter = config.hidden_size, config.local_hidden_size, config.adapter_intermediate_size
        self.model = CodecTTSLocalModel(config)
        self.local_transformer = CodecTTSLocalTransformer(config)
        self.local_input_adapter = CodecTTSLocalAdapter(hidden, adapter, local)
        self.local_output_adapters = nn.ModuleList(
            CodecTTSLocalAdapter(local, adapter, hidden) for _ in range(config.num_channels)
        )
        self.head_norms = nn.ModuleList(
            CodecTTSLocalHeadRMSNorm(hidden, eps=config.head_norm_eps) for _ in range(config.num_channels)
        )
        self.lm_heads = nn.ModuleList(
            [nn.Linear(hidden, config.vocab_size, bias=False)]
            + [nn.Linear(hidden, config.audio_vocab_size + 1, bias=False) for _ in range(config.n_vq)]
        )
        self.post_init()
        self.generation_config = self.default_generation_config(config, self.generation_config)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.embed_tokens[0]

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.model.embed_tokens[0] = value

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_heads[0]

    # ------------------------------------------------------------------ building blocks (shared with generate)
    def channel_logits(self, channel: int, local_hidden: torch.Tensor) -> torch.Tensor:
        """Head of ``channel`` on local transformer outputs [..., local_hidden_size] → [..., V or A]."""
        return self.lm_heads[channel](self.head_norms[channel](self.local_output_adapters[channel](local_hidden)))

    def teacher_forced_local_inputs(self, backbone_hidden: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Local-transformer inputs of every row: [B, T, H] latents + [B, T, 1 + N] labels → [B, T, 1 + N, H].

        Position 0 is the latent; position ``k + 1`` the embedding of channel ``k``'s target (ignored targets embed
        to a zero vector). The last channel's target conditions nothing.
        """
        parts = [backbone_hidden]
        for k in range(self.config.n_vq):
            target = labels[..., k]
            keep = (target != IGNORE_INDEX).unsqueeze(-1)
            embedded = embedding_lookup(self.model.embed_tokens[k], target.clamp(min=0))
            parts.append(embedded * keep.to(backbone_hidden.dtype))
        return torch.stack(parts, dim=2)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        n_vq_for_inference: int | None = None,
        channelwise_loss_weight: Sequence[float] | torch.Tensor | None = None,
        logits_to_keep: int = 0,
        return_dict: bool | None = None,
        past_key_values: Cache | None = None,
        **kwargs,
    ) -> CodecTTSLocalOutputWithPast | tuple:
        r"""
        Args:
            input_ids (`torch.LongTensor` of shape `(batch, seq_len, 1 + n_vq)`):
                token matrix: text ids in channel 0, codes (or the pad code) in channels 1..n_vq.
            attention_mask (`torch.Tensor` of shape `(batch, seq_len)`, *optional*): 1 for real rows, 0 for padding.
            cache (`Cache`, *optional*): backbone KV cache; `past_key_values` is accepted as its former name.
            labels (`torch.LongTensor` of shape `(batch, seq_len, 1 + n_vq)`, *optional*):
                the target row of every position, **already shifted** (``labels[:, t]`` is row ``t + 1``), -100 where
                ignored. They also feed the local transformer (teacher forcing).
            n_vq_for_inference (`int`, *optional*): embed only channels ``0..K`` of the input rows.
            channelwise_loss_weight (`Sequence[float]`, *optional*): ``1 + n_vq`` weights of the channel losses
                (default ``config.channelwise_loss_weight`` or all ones).
            logits_to_keep (`int`, *optional*): without labels, compute text logits for the last rows only (0 = all).
        """
        if input_ids is not None:
            check_token_matrix(input_ids, self.config, "input_ids")
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=resolve_cache(cache, past_key_values),
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            n_vq_for_inference=n_vq_for_inference,
            **kwargs,
        )
        latents = outputs.last_hidden_state
        batch, seq_len, _ = latents.shape
        loss = channel_losses = audio_logits = None

        if labels is None:
            kept = latents[:, -logits_to_keep:] if logits_to_keep else latents
            local_in = self.local_input_adapter(kept).reshape(-1, 1, self.config.local_hidden_size)
            local_out = self.local_transformer(local_in)
            logits = self.channel_logits(0, local_out[:, 0]).view(batch, kept.shape[1], -1)
            local_last_hidden = local_out.view(batch, kept.shape[1], 1, -1)
        else:
            check_token_matrix(labels, self.config, "labels", allow_ignore=True)
            if labels.shape[:2] != (batch, seq_len):
                raise ValueError(f"labels rows {tuple(labels.shape[:2])} do not match the inputs {(batch, seq_len)}")
            local_in = self.local_input_adapter(self.teacher_forced_local_inputs(latents, labels))
            local_out = self.local_transformer(local_in.flatten(0, 1)).view(batch, seq_len, self.config.num_channels, -1)
            local_last_hidden = local_out
            logits = self.channel_logits(0, local_out[:, :, 0])
            audio_logits = torch.stack(
                [self.channel_logits(c, local_out[:, :, c]) for c in range(1, self.config.num_channels)], dim=2
            )
            channel_losses = self.channel_losses(logits, audio_logits, labels)
            loss = self.weighted_loss(channel_losses, channelwise_loss_weight)

        output = CodecTTSLocalOutputWithPast(
            loss=loss,
            channel_losses=channel_losses,
            logits=logits,
            audio_logits=audio_logits,
            backbone_last_hidden_state=latents,
            local_last_hidden_state=local_last_hidden,
            cache=output_cache(outputs),
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )
        return output if return_dict is not False else output.to_tuple()

    # ------------------------------------------------------------------ loss
    @staticmethod
    def channel_losses(logits: torch.Tensor, audio_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean float32 cross-entropy per channel over its non-ignored targets → [1 + N].

        Deviation: a channel without any target contributes 0 (the original divides by zero and returns NaN).
        """
        per_channel = [(logits, labels[..., 0])] + [
            (audio_logits[:, :, k], labels[..., k + 1]) for k in range(audio_logits.shape[2])
        ]
        losses = []
        for channel_logits, target in per_channel:
            total = F.cross_entropy(
                channel_logits.float().flatten(0, -2), target.flatten(), ignore_index=IGNORE_INDEX, reduction="sum"
            )
            count = (target != IGNORE_INDEX).sum().clamp(min=1)
            losses.append(total / count)
        return torch.stack(losses)

    def weighted_loss(
        self, channel_losses: torch.Tensor, weights: Sequence[float] | torch.Tensor | None = None
    ) -> torch.Tensor:
        """``sum_c w_c * loss_c / sum_c w_c`` (weights from the argument, the config, or all ones)."""
        if weights is None:
            weights = self.config.channelwise_loss_weight
        if weights is None:
            return channel_losses.mean()
        weights = torch.as_tensor(weights, dtype=torch.float32, device=channel_losses.device)
        if weights.shape != channel_losses.shape:
            raise ValueError(
                f"channelwise_loss_weight needs {channel_losses.numel()} entries (1 + n_vq), got {tuple(weights.shape)}"
            )
        if not bool((weights >= 0).all()) or not float(weights.sum()) > 0:
            raise ValueError("channelwise_loss_weight must be non-negative with a positive sum")
        return (weights / weights.sum() * channel_losses).sum()


__all__ = [
    "CodecTTSLocalForConditionalGeneration",
    "CodecTTSLocalModel",
    "CodecTTSLocalOutputWithPast",
    "CodecTTSLocalPreTrainedModel",
]
