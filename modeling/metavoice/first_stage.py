"""MetaVoice first stage: a causal GPT over the flattened, interleaved stream of EnCodec codebooks 0 and 1,
conditioned on a speaker d-vector, with classifier-free guidance at generation time."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from transformers import GenerationConfig, GenerationMixin, LogitsProcessorList, PreTrainedModel
from transformers.cache_utils import Cache
from transformers.models.llama.modeling_llama import LlamaRMSNorm
from transformers.utils import ModelOutput

from ...configuration.metavoice import MetaVoiceFirstStageConfig
from ..compat import CACHE_KWARG, resolve_cache
from .guidance import MetaVoiceGuidanceLogitsProcessor, MetaVoiceInterleaveLogitsProcessor, guidance_weights
from .layers import MetaVoiceDecoderLayer, MetaVoiceLayerNorm, causal_padding_mask

logger = logging.getLogger(__name__)

__all__ = ["MetaVoiceFirstStageModel", "MetaVoiceFirstStageOutput", "MetaVoicePreTrainedModel"]


class MetaVoicePreTrainedModel(PreTrainedModel):
    """Weight initialisation of every MetaVoice network: normal(0, 0.02) linears/embeddings, unit norms."""

    config_class = MetaVoiceFirstStageConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = False
    _supports_sdpa = True
    _supports_flash_attn = False  # the additive padding mask needs eager/sdpa
    _supports_attention_backend = False
    _no_split_modules = ["MetaVoiceDecoderLayer"]

    @torch.no_grad()
    def _init_weights(self, module):
        # transformers' `initialization` helpers skip tensors that were loaded from a checkpoint
        from transformers import initialization as init

        std = getattr(self.config, "initializer_range", 0.02)
        if isinstance(module, (nn.Linear, nn.Embedding)):
            init.normal_(module.weight, mean=0.0, std=std)
            if isinstance(module, nn.Linear) and module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, (LlamaRMSNorm, MetaVoiceLayerNorm)):
            init.ones_(module.weight)
        elif isinstance(module, nn.LSTM):
            bound = module.hidden_size**-0.5
            for weight in module.parameters():
                init.uniform_(weight, -bound, bound)


@dataclass
class MetaVoiceFirstStageOutput(ModelOutput):
    """Output of [`MetaVoiceFirstStageModel`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*): mean next-token cross-entropy over labels != -100.
        logits (`torch.FloatTensor` of shape `(batch_size, sequence_length, vocab_size)`): logits at every position
            (or the last `logits_to_keep`).
        cache (`Cache`, *optional*): the KV cache (named `cache`, never `past_key_values`, for transformers >= 5.24).
        hidden_states (`tuple(torch.FloatTensor)`, *optional*): embeddings and every block's output.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    cache: Cache | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None


class MetaVoiceFirstStageModel(MetaVoicePreTrainedModel, GenerationMixin):
    r"""The MetaVoice-1B first stage (1.2 B parameters in the release).

    ``x = embed_tokens(ids) + embed_positions(pos) + speaker_proj(speaker)``, Llama-style pre-norm blocks
    (RMSNorm, attention without rotary, SwiGLU), final RMSNorm and a head tied to the token embedding.
    Positions restart at 0 in every row of a left-padded batch (they are derived from ``attention_mask``), so a
    padded row computes exactly what it computes alone.
    """

    config_class = MetaVoiceFirstStageConfig
    _tied_weights_keys = {"lm_head.weight": "embed_tokens.weight"}
    _can_compile_fullgraph = True  # static cache + torch.compile(fullgraph=True): same tokens (tests/metavoice, GPU)
    _supports_static_cache = True

    def __init__(self, config: MetaVoiceFirstStageConfig):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.embed_positions = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.speaker_proj = nn.Linear(config.speaker_embedding_dim, config.hidden_size, bias=False)
        self.layers = nn.ModuleList(
            MetaVoiceDecoderLayer(config, i, causal=True) for i in range(config.num_hidden_layers)
        )
        self.norm = LlamaRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()
        if getattr(self, "generation_config", None) is not None:
            # the original's sampling defaults; top_k=0 = off (transformers would otherwise fill in top_k=50)
            self.generation_config.update(do_sample=True, temperature=1.0, top_p=0.95, top_k=0)

    def get_input_embeddings(self):
        return self.embed_tokens

    def set_input_embeddings(self, value):
        self.embed_tokens = value

    def get_output_embeddings(self):
        return self.lm_head

    def set_output_embeddings(self, value):
        self.lm_head = value

    # -----------------------------------------------------------------------------------------------------------------
    # forward
    # -----------------------------------------------------------------------------------------------------------------

    def speaker_term(self, speaker_embeds: torch.Tensor | None, batch_size: int) -> torch.Tensor | None:
        """``speaker_proj(speaker_embeds)`` as ``[B, 1, C]`` (``None`` without a speaker)."""
        if speaker_embeds is None:
            return None
        if speaker_embeds.ndim != 2 or speaker_embeds.shape != (batch_size, self.config.speaker_embedding_dim):
            raise ValueError(
                f"speaker_embeds must be [batch_size={batch_size}, {self.config.speaker_embedding_dim}], "
                f"got {tuple(speaker_embeds.shape)}"
            )
        return self.speaker_proj(speaker_embeds.to(self.speaker_proj.weight.dtype))[:, None, :]

    def forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        speaker_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        past_key_values: Cache | None = None,
        use_cache: bool | None = None,
        cache_position: torch.LongTensor | None = None,
        prompt_unconditional_rows: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        logits_to_keep: int = 0,
        return_dict: bool | None = None,
        **kwargs,
    ) -> MetaVoiceFirstStageOutput:
        r"""
        Args:
            input_ids (`torch.LongTensor` of shape `(batch_size, sequence_length)`): first-stage token ids (with a
                cache: only the new tokens).
            attention_mask (`torch.Tensor` of shape `(batch_size, cached + sequence_length)`, *optional*): 1 for
                real tokens, 0 for (left) padding; also gives the positions (they restart at 0 per row).
            speaker_embeds (`torch.FloatTensor` of shape `(batch_size, speaker_embedding_dim)`, *optional*): speaker
                d-vectors; `None` = no speaker term.
            labels (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*): targets as in
                transformers (unshifted; shifted inside; -100 ignored; mean).
            position_ids (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*): overrides the
                positions derived from `attention_mask`.
            cache / past_key_values (`Cache`, *optional*): KV cache (either name).
            cache_position (`torch.LongTensor` of shape `(sequence_length,)`, *optional*): cache slots of the new
                tokens (default: after the cached ones).
            prompt_unconditional_rows (`torch.BoolTensor` of shape `(batch_size,)`, *optional*): rows that see every
                text id as end-of-text (the prompt-unconditional guidance copy).
            logits_to_keep (`int`): 0 = logits at every position, n = the last n positions.
        """
        cache = resolve_cache(cache, past_key_values)
        if input_ids is None or input_ids.ndim != 2:
            raise ValueError("input_ids must be a [batch_size, sequence_length] LongTensor")
        batch, length = input_ids.shape
        config = self.config
        if prompt_unconditional_rows is not None:
            is_text = input_ids > config.end_of_audio_token_id
            input_ids = torch.where(
                prompt_unconditional_rows.to(torch.bool)[:, None] & is_text,
                torch.full_like(input_ids, config.end_of_text_token_id),
                input_ids,
            )
        if use_cache and cache is None:
            from transformers import DynamicCache

            cache = DynamicCache()
        past = 0 if cache is None else cache.get_seq_length()
        if cache_position is None:
            cache_position = torch.arange(length, device=input_ids.device) + past
        if position_ids is None:
            if attention_mask is not None:
                position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, -length:]
            else:
                position_ids = cache_position[None, :].expand(batch, -1)
        if attention_mask is not None and attention_mask.shape[0] != batch:
            raise ValueError(f"attention_mask has {attention_mask.shape[0]} rows, input_ids {batch}")

        hidden = self.embed_tokens(input_ids) + self.embed_positions(position_ids)
        speaker = self.speaker_term(speaker_embeds, batch)
        if speaker is not None:
            hidden = hidden + speaker
        masks: dict[int, torch.Tensor] = {}

        def mask_for(key_length: int) -> torch.Tensor:
            if key_length not in masks:
                masks[key_length] = causal_padding_mask(attention_mask, cache_position, key_length, hidden.dtype)
            return masks[key_length]

        all_hidden = (hidden,) if output_hidden_states else None
        for layer in self.layers:
            hidden = layer(hidden, mask_for, cache=cache, cache_position=cache_position)
            if output_hidden_states:
                all_hidden += (hidden,)
        hidden = self.norm(hidden)
        if logits_to_keep:
            hidden = hidden[:, -logits_to_keep:]
        logits = self.lm_head(hidden)

        loss = None
        if labels is not None:
            if labels.shape != (batch, length):
                raise ValueError(
                    f"labels must have the shape of input_ids {(batch, length)}, got {tuple(labels.shape)}"
                )
            if logits_to_keep:
                raise ValueError("labels need the logits of every position (logits_to_keep=0)")
            loss = F.cross_entropy(
                logits[:, :-1].float().reshape(-1, logits.shape[-1]),
                labels[:, 1:].reshape(-1).to(logits.device),
                ignore_index=-100,
            )
        return MetaVoiceFirstStageOutput(
            loss=loss, logits=logits, cache=cache if use_cache is not False else None, hidden_states=all_hidden
        )

    # -----------------------------------------------------------------------------------------------------------------
    # generation
    # -----------------------------------------------------------------------------------------------------------------

    def prepare_inputs_for_generation(
        self,
        input_ids: torch.LongTensor,
        cache: Cache | None = None,
        past_key_values: Cache | None = None,
        attention_mask: torch.Tensor | None = None,
        cache_position: torch.LongTensor | None = None,
        next_sequence_length: int | None = None,
        use_cache: bool | None = None,
        speaker_embeds: torch.Tensor | None = None,
        prompt_unconditional_rows: torch.Tensor | None = None,
        **kwargs,
    ) -> dict:
        # Written out (not inherited) because the generic version differs between transformers 5.0 and 5.24; the
        # positions of a left-padded row restart at 0, which the generic version does not do.
        cache = resolve_cache(cache, past_key_values)
        total = input_ids.shape[1]
        if cache is None:
            past = 0
        elif next_sequence_length is not None:  # transformers >= 5.2x
            past = total - next_sequence_length
        elif cache_position is not None:  # transformers 5.0
            past = total - cache_position.shape[0]
        else:
            past = int(cache.get_seq_length())
        if attention_mask is not None:
            position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, past:total]
        else:
            position_ids = torch.arange(past, total, device=input_ids.device)[None].expand(input_ids.shape[0], -1)
        inputs = {
            "input_ids": input_ids[:, past:].contiguous(),
            "attention_mask": attention_mask,
            "position_ids": position_ids.contiguous(),
            "cache_position": torch.arange(past, total, device=input_ids.device),
            "cache": cache,
            "use_cache": use_cache,
            "speaker_embeds": speaker_embeds,
            "prompt_unconditional_rows": prompt_unconditional_rows,
            "logits_to_keep": 1,
        }
        for name in ("output_hidden_states", "return_dict"):
            if name in kwargs:
                inputs[name] = kwargs[name]
        return inputs

    def _update_model_kwargs_for_generation(self, outputs, model_kwargs, *args, **kwargs):
        # our output field is `cache` on every release; releases before 5.24 only look for `past_key_values`
        model_kwargs = super()._update_model_kwargs_for_generation(outputs, model_kwargs, *args, **kwargs)
        if outputs.get("cache") is not None:
            model_kwargs[CACHE_KWARG] = outputs["cache"]
        return model_kwargs

    def _get_logits_processor(self, generation_config, *args, **kwargs) -> LogitsProcessorList:
        processors = super()._get_logits_processor(generation_config, *args, **kwargs)
        # guidance combines raw logits and the stream grammar masks them: both must run before temperature / top-k /
        # top-p (transformers appends custom processors at the end)
        first = (MetaVoiceGuidanceLogitsProcessor, MetaVoiceInterleaveLogitsProcessor)
        ordered = sorted(
            (p for p in processors if isinstance(p, first)),
            key=lambda p: not isinstance(p, MetaVoiceGuidanceLogitsProcessor),
        )
        return LogitsProcessorList(ordered + [p for p in processors if not isinstance(p, first)])

    def _pad_with_end_of_audio(self, sequences: torch.Tensor, total: int) -> torch.Tensor:
        if sequences.shape[1] >= total:
            return sequences
        return F.pad(sequences, (0, total - sequences.shape[1]), value=self.config.end_of_audio_token_id)

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        speaker_embeds: torch.Tensor | None = None,
        guidance_scale: float | tuple[float, float] | None = None,
        generation_config: GenerationConfig | None = None,
        logits_processor: LogitsProcessorList | None = None,
        **kwargs,
    ):
        r"""Continue first-stage prompts (text ids + end-of-text) with codebook-0/1 tokens.

        Args:
            input_ids (`torch.LongTensor` of shape `(batch_size, prompt_length)`): left-padded prompts.
            attention_mask (`torch.Tensor` of shape `(batch_size, prompt_length)`, *optional*): 0 on left padding.
            speaker_embeds (`torch.FloatTensor` of shape `(batch_size, speaker_embedding_dim)`, *optional*).
            guidance_scale (`float` or `(g_spk, g_prompt)`, *optional*): classifier-free guidance (see
                `codectts.modeling.metavoice.guidance`); `None` = off. Needs `speaker_embeds`.
            max_new_tokens (`int`, *optional*): new tokens per row; `None` = up to the context
                (`max_position_embeddings`); capped at the context.
            do_sample, temperature, top_k, top_p, use_cache, cache_implementation, ...: as in transformers.

        Returns:
            `torch.LongTensor` of shape `(batch_size, prompt_length + new)` (end-of-audio after a row's end), or a
            `GenerateDecoderOnlyOutput` with `return_dict_in_generate=True` (its per-step tensors cut to the batch).
        """
        if input_ids is None or input_ids.ndim != 2:
            raise ValueError("input_ids must be a [batch_size, prompt_length] LongTensor")
        batch, prompt_length = input_ids.shape
        if prompt_length == 0:
            raise ValueError("input_ids is empty: the prompt needs at least the end-of-text token")
        context = self.config.max_position_embeddings
        if bool((input_ids < 0).any() or (input_ids >= self.config.vocab_size).any()):
            raise ValueError(
                f"input_ids must be first-stage ids in [0, {self.config.vocab_size}) (use processor.tokenizer.encode)"
            )
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        longest = int(attention_mask.sum(-1).max())
        if longest >= context:
            raise ValueError(f"the prompt has {longest} tokens but the context is {context}: shorten the text")
        if generation_config is not None and isinstance(getattr(generation_config, "guidance_scale", None), float):
            # transformers' own CFG field: treat it as the speaker scale, never let its processor see it
            generation_config = GenerationConfig.from_dict(generation_config.to_dict())
            if guidance_scale is None and generation_config.guidance_scale != 1.0:
                guidance_scale = generation_config.guidance_scale
            generation_config.guidance_scale = None
        weights = guidance_weights(guidance_scale)

        max_new_tokens = kwargs.pop("max_new_tokens", None)
        if max_new_tokens is None and generation_config is not None:
            max_new_tokens = generation_config.max_new_tokens
        room = context - prompt_length
        if max_new_tokens is None:
            max_new_tokens = room
        elif max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        elif max_new_tokens > room:
            logger.warning(
                "max_new_tokens=%d would overflow the context of %d; generating %d", max_new_tokens, context, room
            )
            max_new_tokens = room
        kwargs.pop("max_length", None)

        processors = LogitsProcessorList(logits_processor or [])
        rows = None
        if weights is not None:
            if speaker_embeds is None:
                raise ValueError("guidance_scale needs speaker_embeds (guidance is on the speaker condition)")
            copies = len(weights)
            zeros = torch.zeros_like(speaker_embeds)
            speakers = [speaker_embeds, zeros] + ([speaker_embeds] if copies == 3 else [])
            rows = torch.zeros(copies * batch, dtype=torch.bool, device=input_ids.device)
            if copies == 3:
                rows[2 * batch :] = True
            input_ids = input_ids.repeat(copies, 1)
            attention_mask = attention_mask.repeat(copies, 1)
            speaker_embeds = torch.cat(speakers, dim=0)
            processors.append(MetaVoiceGuidanceLogitsProcessor(weights))

        output = super().generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            speaker_embeds=speaker_embeds,
            prompt_unconditional_rows=rows,
            generation_config=generation_config,
            logits_processor=processors,
            max_new_tokens=max_new_tokens,
            **kwargs,
        )
        # every row gets max_new_tokens positions, end-of-audio after its end (as the original's output buffer), even
        # when all rows ended early and transformers stopped
        total = prompt_length + max_new_tokens
        if isinstance(output, torch.Tensor):
            return self._pad_with_end_of_audio(output[:batch], total)
        output.sequences = self._pad_with_end_of_audio(output.sequences[:batch], total)
        if weights is None:
            return output
        for name in ("scores", "logits"):
            steps = getattr(output, name, None)
            if steps is not None:
                setattr(output, name, tuple(step[:batch] for step in steps))
        return output
