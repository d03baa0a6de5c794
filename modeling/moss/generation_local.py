"""Generation for the Local generator: one backbone step per frame, then a local loop over the frame's channels.

``generate()`` goes through transformers' ``GenerationMixin.generate`` (generation-config handling, cache creation,
stopping criteria, ``max_new_tokens``, streamers) and overrides its ``_sample`` — used for both greedy and sampling —
with the frame loop:

1. backbone step (whole prompt first, then the newest row) → post-norm latent of the last row;
2. :meth:`decode_frame`: the local transformer picks the text token, then codebooks ``0..K-1`` one by one, each
   conditioned on the previous choices through the **local KV cache** (exact: the local stack has no positions);
3. the row ``[text, codes..., pad...]`` is appended; a sequence stops at ``<|audio_end|>`` (or at ``max_new_tokens``).

``decode_frame`` is static-shape and synchronisation-free (Python-int channel positions, preallocated local cache,
boolean repetition history, exponential-race sampling), so it can be compiled with ``fullgraph=True`` and captured
in a CUDA graph; ``generate`` compiles it (and the backbone step) whenever transformers would auto-compile, i.e. with
``cache_implementation="static"`` on an accelerator.

Deliberate deviations from the original MOSS-TTS-Local 1.0 ``generate`` (which returned a list of
``(start_length, rows)`` tuples; ours returns ``sequences`` [B, T_prompt + frames, 1 + N] like any transformers model):

* the frame whose text token is ``<|audio_end|>`` is not audio: its codes are replaced by the pad code (the original
  keeps freshly sampled, never-trained codes there and decodes them as a final junk frame);
* with ``n_vq_for_inference=K < N`` the unused codebooks are the pad code (the original writes code 0, a valid code
  that its processor then decodes); decode only the first ``K`` codebooks;
* rows after a sequence finished are ``[<|audio_end|>, pad, ...]`` (the original's convention, kept);
* the local transformer is causal for every attention backend (the original's eager path is bidirectional);
* ``n_vq_for_inference`` outside ``[1, N]`` raises instead of being clamped.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from transformers import GenerationConfig, GenerationMixin
from transformers.cache_utils import DynamicCache, StaticCache
from transformers.generation.logits_process import (
    LogitsProcessorList,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)
from transformers.generation.utils import GenerateDecoderOnlyOutput

from ..compat import CACHE_KWARG, cache_from_kwargs
from ..prompt_checks import check_prompt
from ..quantization import embedding_lookup
from ..stop_flag import LaggedStopFlag
from ..token_selection import ChannelSampling, select_tokens
from .generation_settings import DEFAULT_MAX_NEW_TOKENS, audio_do_sample, prepare_sampling_config

# Recommended decoding of the released MOSS-TTS-Local-Transformer (1.7B): text 1.5/1.0/50, audio 1.0/0.95/50, rep 1.1
# (the same keys as the Delay presets; see `generation_settings.py`).
LOCAL_1_7B_PRESET = {
    "do_sample": True,
    "temperature": 1.5,
    "top_p": 1.0,
    "top_k": 50,
    "audio_do_sample": None,
    "audio_temperature": 1.0,
    "audio_top_p": 0.95,
    "audio_top_k": 50,
    "audio_repetition_penalty": 1.1,
    "audio_repetition_penalty_scope": "sequence",
}

# text warpers the frame decoder implements itself (transformers' versions are dropped from its processor list)
_OWN_TEXT_WARPERS = (TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper)


@dataclass
class CodecTTSLocalGenerateOutput(GenerateDecoderOnlyOutput):
    """``GenerateDecoderOnlyOutput`` whose ``sequences`` are token matrices [batch, T_prompt + frames, 1 + n_vq].

    ``n_vq_for_inference`` says how many codebooks were generated (the others hold the pad code).
    """

    n_vq_for_inference: int | None = None


class CodecTTSLocalGenerationMixin(GenerationMixin):
    """Adds frame-by-frame generation to [`CodecTTSLocalForConditionalGeneration`]."""

    @staticmethod
    def default_generation_config(config, base: GenerationConfig | None = None) -> GenerationConfig:
        """The model's default decoding: the released model's sampling preset, stop on ``<|audio_end|>``."""
        generation_config = copy.deepcopy(base) if base is not None else GenerationConfig()
        # a real preset now, not derived from the model config: transformers drops the custom (audio) entries of a
        # `_from_model_config` file when it is loaded again
        generation_config._from_model_config = False
        generation_config.eos_token_id = config.audio_end_token_id
        generation_config.pad_token_id = config.pad_token_id
        generation_config.max_new_tokens = DEFAULT_MAX_NEW_TOKENS
        for key, value in LOCAL_1_7B_PRESET.items():
            setattr(generation_config, key, value)
        generation_config.n_vq_for_inference = None
        return generation_config

    def generate(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        generation_config: GenerationConfig | None = None,
        *,
        n_vq_for_inference: int | None = None,
        **kwargs,
    ) -> torch.LongTensor | CodecTTSLocalGenerateOutput:
        r"""Generate codec frames after a prompt.

        Sampling settings (the same names as the Delay generator, see `codectts.modeling.moss.generation_settings`), as
        keyword arguments or on `generation_config` (defaults: `model.generation_config`, the released preset):

        * text channel: `do_sample`, `temperature`, `top_k`, `top_p` (transformers' warper semantics); the original
          names `text_temperature` / `text_top_k` / `text_top_p` are aliases (`text_temperature <= 0`: greedy text).
          transformers' text logits *processors* (`sequence_bias`, `repetition_penalty`, `min_new_tokens`,
          `logits_processor`, ...) are applied before them (the frame loop then runs uncompiled); other sampling
          warpers (`min_p`, `typical_p`, ...) raise `ValueError`.
        * audio channels: `audio_do_sample` (default: `do_sample`), `audio_temperature` (<= 0: greedy audio),
          `audio_top_k` (ties with the k-th kept), `audio_top_p` (transformers' variant), `audio_repetition_penalty`
          — applied **only when sampling**, as the reference does: per sequence and per codebook, over the codes in
          that codebook's column of the whole sequence (prompt included); `audio_repetition_penalty_scope` can only
          be `"sequence"`.
        * `do_sample=False` is greedy for text and audio. Only greedy decoding and sampling are supported.

        Args:
            input_ids (`torch.LongTensor` of shape `(batch, T_prompt, 1 + n_vq)`): left-padded prompt rows (from the
                processor in generation mode, ending with the ``<|audio_start|>`` row).
            attention_mask (`torch.Tensor` of shape `(batch, T_prompt)`, *optional*): 0 on left padding.
            generation_config (`GenerationConfig`, *optional*): defaults to ``model.generation_config``.
            n_vq_for_inference (`int`, *optional*): generate only the first ``K`` codebooks (the rest stay pad).
            kwargs: sampling settings (above) and other `GenerationConfig` fields (``max_new_tokens``: frame budget,
                ``cache_implementation="static"``, ``return_dict_in_generate``, ``streamer``, ...).

        Returns:
            `torch.LongTensor` ``sequences`` of shape `(batch, T_prompt + frames, 1 + n_vq)`, or a
            [`CodecTTSLocalGenerateOutput`] with ``return_dict_in_generate=True``.
        """
        from .local import check_token_matrix, resolve_n_vq

        if input_ids is None:
            input_ids = kwargs.pop("inputs", None)
        if input_ids is None:
            raise ValueError("generate needs input_ids [batch, T_prompt, 1 + n_vq]")
        check_token_matrix(input_ids, self.config, "input_ids")
        check_prompt(input_ids, attention_mask)
        if attention_mask is None:
            attention_mask = torch.ones(input_ids.shape[:2], dtype=torch.long, device=input_ids.device)
        for name in ("prefix_allowed_tokens_fn", "negative_prompt_ids"):
            if kwargs.get(name) is not None:
                raise ValueError(f"{name} is not supported by this model's generate")
        max_new_tokens = kwargs.get("max_new_tokens")
        if max_new_tokens is not None and (not isinstance(max_new_tokens, int) or max_new_tokens < 1):
            raise ValueError(f"max_new_tokens must be a positive int, got {max_new_tokens!r}")

        generation_config, model_kwargs = prepare_sampling_config(
            self, generation_config, kwargs, LOCAL_1_7B_PRESET, family="local-transformer"
        )
        if generation_config.audio_repetition_penalty_scope not in (None, "sequence"):
            raise ValueError(
                "audio_repetition_penalty_scope must be 'sequence' for the Local generator (its reference penalises "
                f"per sequence and codebook), got {generation_config.audio_repetition_penalty_scope!r}"
            )
        if n_vq_for_inference is None:
            n_vq_for_inference = getattr(generation_config, "n_vq_for_inference", None)
        generation_config.n_vq_for_inference = resolve_n_vq(n_vq_for_inference, self.config)
        if max_new_tokens is not None:
            generation_config.max_length = None
        if generation_config.max_new_tokens is None and generation_config.max_length is None:
            generation_config.max_new_tokens = DEFAULT_MAX_NEW_TOKENS
        if generation_config.eos_token_id is None:
            generation_config.eos_token_id = self.config.audio_end_token_id
        for name in ("output_scores", "output_logits", "output_attentions"):
            if getattr(generation_config, name, False):
                raise ValueError(f"{name}=True is not supported by this model's generate")
        self._text_sampling(generation_config)  # validate early
        self._audio_sampling(generation_config)
        return super().generate(
            input_ids=input_ids, attention_mask=attention_mask, generation_config=generation_config, **model_kwargs
        )

    # ------------------------------------------------------------------ sampling settings
    @staticmethod
    def _text_sampling(generation_config: GenerationConfig) -> ChannelSampling:
        return ChannelSampling(
            do_sample=bool(generation_config.do_sample),
            temperature=float(generation_config.temperature or 1.0),
            top_k=generation_config.top_k,
            top_p=generation_config.top_p,
        )

    @staticmethod
    def _audio_sampling(generation_config: GenerationConfig) -> ChannelSampling:
        return ChannelSampling(
            do_sample=audio_do_sample(generation_config),
            temperature=float(generation_config.audio_temperature or 1.0),
            top_k=generation_config.audio_top_k,
            top_p=generation_config.audio_top_p,
            repetition_penalty=float(generation_config.audio_repetition_penalty or 1.0),
        )

    # ------------------------------------------------------------------ one frame of the local loop
    def decode_frame(
        self,
        backbone_hidden: torch.Tensor,
        local_cache,
        history: torch.Tensor,
        n_codebooks: int,
        text_sampling: ChannelSampling,
        audio_sampling: ChannelSampling,
        text_logits_processor: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Choose the next row's text token and first ``n_codebooks`` codes.

        Args:
            backbone_hidden: [B, H] post-norm backbone latent of the last row.
            local_cache: a :class:`LocalKVCache` for ``B`` sequences (overwritten).
            history: [B, >= n_codebooks, A] bool, codes already present in each codebook's column; updated in place.
            text_logits_processor: optional ``scores [B, V] -> scores`` applied to the text logits before
                ``text_sampling`` (transformers' text logits processors; not static-shape, so not compiled).
        Returns:
            [B, 1 + n_codebooks] int64 tokens.
        """
        pad = self.config.audio_pad_code
        local_in = self.local_input_adapter(backbone_hidden).unsqueeze(1)
        tokens = []
        for channel in range(n_codebooks + 1):
            local_out = self.local_transformer(local_in, cache=local_cache, start=channel)[:, 0]
            logits = self.channel_logits(channel, local_out)
            if channel == 0:
                if text_logits_processor is not None:
                    logits = text_logits_processor(logits.float())
                token = select_tokens(logits, text_sampling)
            else:
                logits = logits.float()
                logits[:, pad] = float("-inf")  # the pad code is never generated
                column = history[:, channel - 1]
                token = select_tokens(logits, audio_sampling, seen=column)
                column.scatter_(-1, token.unsqueeze(-1), True)
            tokens.append(token)
            if channel < n_codebooks:
                embedded = embedding_lookup(self.model.embed_tokens[channel], token)
                local_in = self.local_input_adapter(embedded).unsqueeze(1)
        return torch.stack(tokens, dim=1)

    def backbone_step(
        self,
        rows: torch.Tensor,
        attention_mask: torch.Tensor | None,
        position_ids: torch.Tensor,
        cache,
        n_codebooks: int,
        cache_position: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Run the backbone on new rows [B, q, 1 + N] with the cache; return the last row's latent [B, H].

        ``cache_position`` ([q], the rows' slots in the cache) is passed on where the backbone accepts it.
        """
        out = self.model(
            input_ids=rows,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            cache_position=cache_position,
            use_cache=True,
            n_vq_for_inference=n_codebooks,
        )
        return out.last_hidden_state[:, -1]

    def _compiled(self, name: str, fn, generation_config: GenerationConfig):
        """``torch.compile`` ``fn`` once per model (fullgraph), with the generation config's compile options."""
        cache = self.__dict__.setdefault("_codectts_compiled", {})
        if name not in cache:
            compile_config = generation_config.compile_config
            options: dict[str, Any] = {"fullgraph": True}
            if compile_config is not None:
                options.update(
                    dynamic=compile_config.dynamic,
                    backend=compile_config.backend,
                    mode=compile_config.mode,
                    options=compile_config.options,
                )
                if options.get("mode") and options.get("options"):
                    options.pop("options")
            cache[name] = torch.compile(fn, **options)
        return cache[name]

    # ------------------------------------------------------------------ the frame loop (replaces GenerationMixin._sample)
    def _sample(
        self,
        input_ids: torch.LongTensor,
        logits_processor=None,
        stopping_criteria=None,
        generation_config: GenerationConfig | None = None,
        synced_gpus: bool = False,
        streamer=None,
        **model_kwargs,
    ) -> torch.LongTensor | CodecTTSLocalGenerateOutput:
        if synced_gpus:
            raise ValueError("synced_gpus generation is not supported by this model")
        config = self.config
        n_codebooks = generation_config.n_vq_for_inference or config.n_vq
        text_sampling = self._text_sampling(generation_config)
        audio_sampling = self._audio_sampling(generation_config)
        batch, prompt_len, _ = input_ids.shape
        device = input_ids.device

        attention_mask = model_kwargs.get("attention_mask")
        if attention_mask is None:  # recent transformers drop an all-ones mask
            attention_mask = torch.ones((batch, prompt_len), dtype=torch.long, device=device)
        attention_mask = attention_mask.to(device=device, dtype=torch.long)
        cache = cache_from_kwargs(model_kwargs)
        if cache is None:
            cache = DynamicCache()
        static = isinstance(cache, StaticCache)

        # Positions follow the mask (left padding), as transformers' generation derives them.
        prompt_positions = (attention_mask.cumsum(-1) - 1).masked_fill(attention_mask == 0, 1)
        next_position = attention_mask.sum(-1, keepdim=True)  # [B, 1]
        if static:
            # A fixed-length mask (future slots are hidden by causality) keeps every step's shapes identical.
            max_len = cache.max_cache_len if hasattr(cache, "max_cache_len") else generation_config.max_length
            step_mask = torch.ones((batch, max_len), dtype=torch.long, device=device)
            step_mask[:, :prompt_len] = attention_mask
        else:
            step_mask = attention_mask

        # transformers' text processors (sequence_bias, min_new_tokens, ...) minus the warpers decode_frame applies
        text_processors = LogitsProcessorList(p for p in logits_processor or () if not isinstance(p, _OWN_TEXT_WARPERS))
        unsupported = [type(p).__name__ for p in text_processors if type(p).__name__.endswith("LogitsWarper")]
        if unsupported:
            raise ValueError(
                f"{', '.join(unsupported)} is not supported by the Local generator's text sampler: use temperature, "
                "top_k and top_p"
            )
        text_logits_processor = None
        if text_processors:

            def text_logits_processor(scores: torch.Tensor) -> torch.Tensor:
                return text_processors(sequences[..., 0], scores)

        # the processors see the growing sequence: no static shapes, so the frame loop runs eagerly with them
        use_compile = self._valid_auto_compile_criteria(model_kwargs, generation_config) and not text_processors
        decode_frame = self.decode_frame
        backbone_step = self.backbone_step
        if use_compile:
            decode_frame = self._compiled("decode_frame", self.decode_frame, generation_config)
            backbone_step = self._compiled("backbone_step", self.backbone_step, generation_config)

        # Prefill (eager: the prompt length varies between calls).
        hidden = self.backbone_step(
            input_ids,
            step_mask if static else attention_mask,
            prompt_positions,
            cache,
            n_codebooks,
            torch.arange(prompt_len, device=device),
        )
        cache_position = torch.tensor([prompt_len], device=device)
        dtype = hidden.dtype
        local_cache = self.local_transformer.new_cache(batch, dtype, hidden.device)
        # history[b, k, code]: code occurs in codebook k's column of sequence b (prompt included).
        history = torch.zeros((batch, n_codebooks, config.audio_vocab_size + 1), dtype=torch.bool, device=device)
        history.scatter_(2, input_ids[..., 1 : n_codebooks + 1].transpose(1, 2).long(), True)

        if use_compile and hasattr(torch, "_dynamo"):
            torch._dynamo.mark_static_address(history)  # mutated in place by the (CUDA-graphed) frame decoder
        # Backstop for the frame budget (transformers' MaxLengthCriteria normally stops the loop first).
        max_length = generation_config.max_length or prompt_len + (generation_config.max_new_tokens or 0)
        unfinished = torch.ones(batch, dtype=torch.bool, device=device)
        audio_end = torch.tensor(config.audio_end_token_id, device=device)
        pad_columns = torch.full((batch, config.n_vq - n_codebooks), config.audio_pad_code, dtype=torch.long, device=device)
        sequences = input_ids.long()
        stop_flag = LaggedStopFlag(device, lag=streamer is None)  # no host stall per frame on CUDA
        while True:
            frame = decode_frame(
                hidden, local_cache, history, n_codebooks, text_sampling, audio_sampling, text_logits_processor
            )
            frame = torch.cat([frame.to(device), pad_columns], dim=1)
            text = torch.where(unfinished, frame[:, 0], audio_end)
            # The <|audio_end|> row (and every row after it) carries no audio.
            audio = frame[:, 1:].masked_fill((text == audio_end).unsqueeze(1), config.audio_pad_code)
            frame = torch.cat([text.unsqueeze(1), audio], dim=1)
            sequences = torch.cat([sequences, frame.unsqueeze(1)], dim=1)
            if streamer is not None:
                streamer.put(frame.cpu())  # the new row [B, 1 + N], as the Delay generator does
            unfinished = unfinished & (text != audio_end)
            if stopping_criteria is not None:
                unfinished = unfinished & ~stopping_criteria(sequences[..., 0], None).to(device)
            if stop_flag.push(~unfinished.any()):
                sequences = sequences[:, : sequences.shape[1] - stop_flag.lag_steps]  # frames after all finished
                break
            if sequences.shape[1] >= max_length:
                break
            if static:
                mask = step_mask
            else:
                step_mask = torch.cat([step_mask, step_mask.new_ones((batch, 1))], dim=1)
                mask = step_mask
            hidden = backbone_step(frame.unsqueeze(1), mask, next_position, cache, n_codebooks, cache_position)
            next_position = next_position + 1
            cache_position = cache_position + 1

        if streamer is not None:
            streamer.end()
        if generation_config.return_dict_in_generate:
            return CodecTTSLocalGenerateOutput(
                sequences=sequences, n_vq_for_inference=n_codebooks, **{CACHE_KWARG: cache}
            )
        return sequences


__all__ = ["LOCAL_1_7B_PRESET", "CodecTTSLocalGenerateOutput", "CodecTTSLocalGenerationMixin"]
