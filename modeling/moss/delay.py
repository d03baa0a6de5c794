"""Delay-pattern RVQ generator (MOSS-TTS Delay compatible): Qwen3 backbone + summed multi-channel embeddings.

Every input row is ``[text, code_0, ..., code_{N-1}]``; the row embedding is the text embedding plus one embedding
per codebook (the audio pad code has its own *learned* row, so pad columns contribute a vector too). One text head
and ``N`` audio heads read the final (normed) hidden state. Audio codebook ``j`` is delayed by ``j`` rows
(`delay_pattern.py`); generation (`generation_delay.py`) drives the per-row state machine.

Layout of our checkpoints (the converter maps the original names)::

    model.*                   Qwen3Model (embed_tokens, layers, norm)        <- language_model.*
    audio_embed_tokens.weight [N * (A), H]  codebook j uses rows j*A..j*A+A-1  <- emb_ext.{j}.weight
    lm_head.weight            [V, H]        text head                          <- lm_heads.0.weight
    audio_lm_head.weight      [N * (A), H]  all audio heads in one matmul      <- lm_heads.{j+1}.weight

with ``A = audio_vocab_size + 1``. Fusing the N embeddings / heads into one table / one matmul is a layout choice
(one kernel instead of N); the math is the same as the original's N separate modules.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel, Qwen3Model
from transformers.cache_utils import Cache
from transformers.utils import ModelOutput

from ...configuration.moss.delay import CodecTTSDelayConfig
from ..compat import backbone_cache_kwargs, output_cache, resolve_cache
from ..quantization import embedding_lookup, linear_rows
from .generation_delay import CodecTTSDelayGenerationMixin

__all__ = [
    "CodecTTSDelayForConditionalGeneration",
    "CodecTTSDelayOutputWithPast",
    "CodecTTSDelayPreTrainedModel",
    "delay_loss",
]


@dataclass
class CodecTTSDelayOutputWithPast(ModelOutput):
    """Output of [`CodecTTSDelayForConditionalGeneration`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*): training loss (see [`delay_loss`]).
        logits (`torch.FloatTensor` of shape `(batch_size, kept_positions, vocab_size)`): text-head logits.
        audio_logits (`torch.FloatTensor` of shape `(batch_size, kept_positions, n_vq, audio_vocab_size + 1)`):
            audio-head logits; the pad code's logit is `-inf` (it is never a valid prediction).
        channel_losses (`torch.FloatTensor` of shape `(1 + n_vq,)`, *optional*): mean loss of every channel.
        sample_losses (`torch.FloatTensor` of shape `(batch_size,)`, *optional*): loss of every sequence.
        cache (`Cache`, *optional*): backbone KV cache (also readable as ``past_key_values``).
        hidden_states (`tuple(torch.FloatTensor)`, *optional*): embeddings + every layer output (the last one
            post-norm), each `(batch_size, sequence_length, hidden_size)`.
        attentions (`tuple(torch.FloatTensor)`, *optional*): attention weights of every layer.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    audio_logits: torch.FloatTensor | None = None
    channel_losses: torch.FloatTensor | None = None
    sample_losses: torch.FloatTensor | None = None
    cache: Cache | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None

    @property
    def past_key_values(self) -> Cache | None:
        """The former name of ``cache`` (read-only)."""
        return self.cache


def delay_loss(
    logits: torch.Tensor,
    audio_logits: torch.Tensor,
    labels: torch.Tensor,
    channelwise_loss_weight: Sequence[float] | torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cross-entropy of all ``1 + N`` channels (labels already shifted, ``-100`` ignored), computed in float32.

    With ``S[b, k]`` the summed token loss and ``n[b, k]`` the number of supervised tokens of channel ``k`` in
    sequence ``b``:

    * ``channel_losses[k] = sum_b S[b, k] / max(1, sum_b n[b, k])``;
    * without weights the loss is token-weighted over all channels, ``sum S / max(1, sum n)``, and
      ``sample_losses[b] = sum_k S[b, k] / max(1, sum_k n[b, k])``;
    * with weights ``w`` (length ``1 + N``) ``loss = sum_k w_k channel_losses[k] / sum_k w_k`` and
      ``sample_losses[b] = sum_k w_k S[b, k] / max(1, n[b, k]) / sum_k w_k``.

    Returns:
        ``(loss, channel_losses [1 + N], sample_losses [B])``.
    """
    batch, length, num_codebooks, audio_size = audio_logits.shape
    text_losses = F.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]), labels[..., 0].reshape(-1), ignore_index=-100, reduction="none"
    ).view(batch, length, 1)
    audio_losses = F.cross_entropy(
        audio_logits.float().reshape(-1, audio_size), labels[..., 1:].reshape(-1), ignore_index=-100, reduction="none"
    ).view(batch, length, num_codebooks)
    sums = torch.cat([text_losses, audio_losses], dim=-1).sum(1)  # [B, 1+N]
    counts = (labels != -100).sum(1).to(sums.dtype)  # [B, 1+N]
    channel_losses = sums.sum(0) / counts.sum(0).clamp(min=1)
    if channelwise_loss_weight is None:
        loss = sums.sum() / counts.sum().clamp(min=1)
        sample_losses = sums.sum(1) / counts.sum(1).clamp(min=1)
        return loss, channel_losses, sample_losses
    weights = torch.as_tensor(channelwise_loss_weight, dtype=sums.dtype, device=sums.device)
    if weights.shape != (1 + num_codebooks,):
        raise ValueError(
            f"channelwise_loss_weight needs {1 + num_codebooks} entries (text + {num_codebooks} codebooks), "
            f"got shape {tuple(weights.shape)}"
        )
    loss = (weights * channel_losses).sum() / weights.sum()
    sample_losses = (weights * sums / counts.clamp(min=1)).sum(1) / weights.sum()
    return loss, channel_losses, sample_losses


class CodecTTSDelayPreTrainedModel(PreTrainedModel):
    config_class = CodecTTSDelayConfig
    config: CodecTTSDelayConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _no_split_modules = ["Qwen3DecoderLayer"]
    _skip_keys_device_placement = ["cache", "past_key_values"]
    _supports_flash_attn = True
    _supports_sdpa = True
    _can_compile_fullgraph = True  # static cache + torch.compile (tests/test_delay_generate.py)
    _supports_attention_backend = True
    # weights are initialised by PreTrainedModel._init_weights (normal(0, initializer_range) for linear/embedding
    # layers, ones for RMSNorm)


class CodecTTSDelayForConditionalGeneration(CodecTTSDelayGenerationMixin, CodecTTSDelayPreTrainedModel):
    """Qwen3 backbone with summed text + ``n_vq`` audio embeddings and ``1 + n_vq`` output heads.

    Inputs are token matrices ``input_ids [batch, rows, 1 + n_vq]`` built by the processor (text column first,
    audio columns in the delay layout). See `generate` (`generation_delay.py`) for TTS decoding.
    """

    def __init__(self, config: CodecTTSDelayConfig):
        super().__init__(config)
        self.model = Qwen3Model(config.text_config)
        hidden, num_rows = config.text_config.hidden_size, config.n_vq * config.audio_num_embeddings
        self.audio_embed_tokens = nn.Embedding(num_rows, hidden)
        self.lm_head = nn.Linear(hidden, config.text_config.vocab_size, bias=False)
        self.audio_lm_head = nn.Linear(hidden, num_rows, bias=False)
        self.post_init()
        self.generation_config = self.default_generation_config(config, self.generation_config)

    def get_input_embeddings(self):
        return self.model.embed_tokens

    def set_input_embeddings(self, value):
        self.model.embed_tokens = value

    def get_output_embeddings(self):
        return self.lm_head

    def set_output_embeddings(self, new_embeddings):
        self.lm_head = new_embeddings

    def check_input_ids(self, input_ids: torch.Tensor) -> None:
        """Raise a `ValueError`/`TypeError` naming the problem if ``input_ids`` is not a valid token matrix."""
        channels = 1 + self.config.n_vq
        if not isinstance(input_ids, torch.Tensor):
            raise TypeError(f"input_ids must be a torch.Tensor, got {type(input_ids).__name__}")
        if input_ids.dim() != 3 or input_ids.shape[-1] != channels:
            raise ValueError(
                f"input_ids must have shape [batch, rows, {channels}] (text + {self.config.n_vq} codebooks), "
                f"got {tuple(input_ids.shape)}"
            )
        if input_ids.dtype.is_floating_point or input_ids.dtype == torch.bool:
            raise TypeError(f"input_ids must be an integer tensor, got {input_ids.dtype}")
        text, codes = input_ids[..., 0], input_ids[..., 1:]
        bad_text = (text < 0) | (text >= self.config.text_config.vocab_size)
        if bool(bad_text.any()):
            raise ValueError(
                f"text tokens must be in [0, {self.config.text_config.vocab_size}); found "
                f"{text[bad_text].unique()[:8].tolist()}"
            )
        bad_codes = (codes < 0) | (codes >= self.config.audio_num_embeddings)
        if bool(bad_codes.any()):
            raise ValueError(
                f"audio codes must be in [0, {self.config.audio_vocab_size}] ({self.config.audio_pad_code} = pad); "
                f"found {codes[bad_codes].unique()[:8].tolist()} (codes from a codec with a larger codebook?)"
            )

    def embed_input_ids(self, input_ids: torch.LongTensor) -> torch.Tensor:
        """``[B, T, 1 + N]`` token matrix -> ``[B, T, H]`` summed text + audio embeddings."""
        text = embedding_lookup(self.model.embed_tokens, input_ids[..., 0])
        # codebook j uses rows j*A .. j*A + A - 1 of the fused table (computed here, not a buffer: meta-device loading
        # would leave a non-persistent buffer uninitialised)
        offsets = torch.arange(self.config.n_vq, device=input_ids.device) * self.config.audio_num_embeddings
        audio = embedding_lookup(self.audio_embed_tokens, input_ids[..., 1:] + offsets).sum(dim=-2)
        return text + audio

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        cache_position: torch.LongTensor | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        channelwise_loss_weight: Sequence[float] | torch.Tensor | None = None,
        hidden_out_layers: Sequence[int] | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        past_key_values: Cache | None = None,
        **kwargs,
    ) -> CodecTTSDelayOutputWithPast | tuple:
        r"""
        Args:
            input_ids (`torch.LongTensor` of shape `(batch_size, sequence_length, 1 + n_vq)`):
                token matrix: text token, then one code per codebook (delay layout; pad = `audio_pad_code`).
                Multi-row inputs are range-checked (one host sync); single-row decode steps are trusted.
            attention_mask (`torch.Tensor` of shape `(batch_size, sequence_length)`, *optional*): 1 = real row.
            inputs_embeds (`torch.FloatTensor` of shape `(batch_size, sequence_length, hidden_size)`, *optional*):
                precomputed row embeddings instead of `input_ids`.
            cache (`Cache`, *optional*): backbone KV cache; `past_key_values` is accepted as its former name.
            labels (`torch.LongTensor` of shape `(batch_size, sequence_length, 1 + n_vq)`, *optional*):
                targets **already shifted** (`labels[:, t]` is row `t + 1`), `-100` = ignored. Audio labels must
                not be the pad code (mask them with `-100`).
            logits_to_keep (`int` or `torch.Tensor`, *optional*): compute heads only for the last `n` positions
                (`0` = all) or for the given indices. Generation uses 1.
            channelwise_loss_weight (`Sequence[float]` of length `1 + n_vq`, *optional*): see [`delay_loss`].
            hidden_out_layers (`Sequence[int]` of length `1 + n_vq`, *optional*): index into `hidden_states`
                (0 = embeddings, -1 = final normed state) that head `k` reads; default: all read the final state.
        """
        return_dict = return_dict if return_dict is not None else True
        cache = resolve_cache(cache, past_key_values)
        # generation-internal: text head rows to compute (see `generation_delay.TextHeadShortcut`); not public API
        text_head_rows = kwargs.pop("_text_head_rows", None)
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids or inputs_embeds")
        if input_ids is not None:
            if input_ids.dim() != 3 or input_ids.shape[-1] != 1 + self.config.n_vq:
                self.check_input_ids(input_ids)  # raises with a precise message
            if input_ids.shape[1] > 1 and not torch.compiler.is_compiling():
                self.check_input_ids(input_ids)
            inputs_embeds = self.embed_input_ids(input_ids)
        if isinstance(attention_mask, torch.Tensor) and attention_mask.dim() == 2:
            rows, mask_rows = inputs_embeds.shape[1], attention_mask.shape[1]
            # without a cache the mask covers exactly the input rows; with one it also covers the cached rows
            if attention_mask.shape[0] != inputs_embeds.shape[0] or (
                mask_rows != rows if cache is None else mask_rows < rows
            ):
                raise ValueError(
                    f"attention_mask has shape {tuple(attention_mask.shape)} but the inputs have "
                    f"{tuple(inputs_embeds.shape[:2])} (batch, rows); it must cover the cached and the new rows"
                )
        if hidden_out_layers is not None and len(hidden_out_layers) != 1 + self.config.n_vq:
            raise ValueError(f"hidden_out_layers needs {1 + self.config.n_vq} entries, got {len(hidden_out_layers)}")

        backbone_kwargs = {**kwargs, **backbone_cache_kwargs(self.model, cache, cache_position)}
        want_hidden = bool(output_hidden_states) or hidden_out_layers is not None
        outputs = self.model(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=use_cache,
            output_hidden_states=want_hidden,
            output_attentions=output_attentions,
            return_dict=True,
            **backbone_kwargs,
        )

        keep = slice(-logits_to_keep, None) if isinstance(logits_to_keep, int) else logits_to_keep
        if hidden_out_layers is None:
            hidden = outputs.last_hidden_state[:, keep]
            if text_head_rows is None:
                logits = self.lm_head(hidden)
            else:  # only these rows: [B, kept, len(rows)] (a packed quantized head: the whole head, then the rows)
                logits = linear_rows(self.lm_head, hidden, text_head_rows)
            audio_logits = self.audio_lm_head(hidden)
            audio_logits = audio_logits.view(*audio_logits.shape[:-1], self.config.n_vq, -1)
        else:
            logits, audio_logits = self._heads_per_layer(outputs.hidden_states, hidden_out_layers, keep)
        # the pad code is an input-only symbol: never predict it
        audio_logits[..., self.config.audio_pad_code] = float("-inf")

        loss = channel_losses = sample_losses = None
        if labels is not None:
            if labels.shape != (*logits.shape[:2], 1 + self.config.n_vq):
                raise ValueError(
                    f"labels must have shape {(*logits.shape[:2], 1 + self.config.n_vq)} (already shifted, -100 = "
                    f"ignored; logits_to_keep must be 0), got {tuple(labels.shape)}"
                )
            if bool((labels[..., 1:] == self.config.audio_pad_code).any()):
                raise ValueError(
                    f"audio labels contain the pad code {self.config.audio_pad_code}; set them to -100 (the pad is "
                    "never predicted)"
                )
            loss, channel_losses, sample_losses = delay_loss(logits, audio_logits, labels, channelwise_loss_weight)

        output = CodecTTSDelayOutputWithPast(
            loss=loss,
            logits=logits,
            audio_logits=audio_logits,
            channel_losses=channel_losses,
            sample_losses=sample_losses,
            cache=output_cache(outputs),
            hidden_states=outputs.hidden_states if output_hidden_states else None,
            attentions=outputs.attentions,
        )
        return output if return_dict else output.to_tuple()

    def _heads_per_layer(self, hidden_states, layers: Sequence[int], keep) -> tuple[torch.Tensor, torch.Tensor]:
        """Head ``k`` reads ``hidden_states[layers[k]]`` (the original's ``hidden_out_layers`` option)."""
        num_codes = self.config.audio_num_embeddings
        logits = self.lm_head(hidden_states[layers[0]][:, keep])
        head = self.audio_lm_head.weight.view(self.config.n_vq, num_codes, -1)
        audio = [F.linear(hidden_states[index][:, keep], head[j]) for j, index in enumerate(layers[1:])]
        return logits, torch.stack(audio, dim=-2)
