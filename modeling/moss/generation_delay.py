"""Generation for the delay-pattern generator: `GenerationMixin.generate` + a per-row state machine.

`generate()` keeps everything transformers gives a decoder-only model (generation config handling, caches incl.
`cache_implementation="static"`, auto-compile of the decode step, text logits processors, stopping criteria,
streamers, output dataclasses). Only the token selection differs: every step emits one *row* ``[text, N codes]``.
No released transformers version (5.0 to 5.23) has hooks for multi-token selection, so — like transformers' own
CSM and Higgs-Audio-v2 — we provide `_sample`; it is a short loop around the standard helpers
(`_prefill`, `prepare_inputs_for_generation`, `_update_model_kwargs_for_generation`, `get_compiled_call`), and the
model-specific logic lives in `DelayPatternState` (rules) and `audio_sampling.py` (sampling).

State machine per sequence (MOSS-TTS Delay reference, spec 5.1), all tensors on the model device:

* text phase: sample text with `<|endoftext|>`, gen slot, delay slot and `<|audio_end|>` banned;
* `<|audio_start|>` opens an audio block: only gen slot / delay slot may be sampled; codebook ``j`` is sampled
  from the ``j+1``-th row of the block on (the delay staircase), other codebooks are the pad code;
* the first (sampled) delay slot starts the flush: ``N - 1`` forced delay slots, during which codebook ``j`` is
  sampled only while ``j >= rows flushed``, then a forced `<|audio_end|>`; free text again (another audio block,
  or `<|im_end|>` which finishes the sequence — finished sequences continue with pad rows);
* global bans: the delay slot at step 0, `<|im_end|>` during the first ``N + 1`` steps.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from transformers import GenerationConfig, GenerationMixin
from transformers.generation import GenerateDecoderOnlyOutput, LogitsProcessorList, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from ...configuration.moss.delay import delay_generation_defaults
from ..compat import (
    CACHE_KWARG,
    cache_from_kwargs,
    decode_step_kwargs,
    prefill,
    update_model_kwargs_for_generation,
)
from ..prompt_checks import check_prompt
from ..stop_flag import LaggedStopFlag
from ..token_selection import ChannelSampling, RepetitionHistory, choose, process_logits
from .delay_pattern import revert_delay_pattern
from .generation_settings import DEFAULT_MAX_NEW_TOKENS, audio_do_sample, prepare_sampling_config

__all__ = [
    "CodecTTSDelayGenerateOutput",
    "CodecTTSDelayGenerationMixin",
    "DelayAudioFrameStreamer",
    "DelayPatternState",
    "TextHeadShortcut",
]


@dataclass
class CodecTTSDelayGenerateOutput(GenerateDecoderOnlyOutput):
    """`GenerateDecoderOnlyOutput` with token matrices and audio-head scores.

    Args:
        sequences (`torch.LongTensor` of shape `(batch_size, prompt_rows + steps, 1 + n_vq)`): prompt + generated
            rows (finished sequences continue with `[pad_token_id, audio_pad_code...]` rows).
        scores / logits: per step, processed / raw text-head scores `(batch_size, vocab_size)`.
        audio_scores / audio_logits (`tuple(torch.FloatTensor)`): per step, processed / raw audio-head scores
            `(batch_size, n_vq, audio_vocab_size + 1)`.
    """

    audio_scores: tuple[torch.FloatTensor, ...] | None = None
    audio_logits: tuple[torch.FloatTensor, ...] | None = None


class DelayPatternState:
    """Vectorised per-row state of the delay-pattern decoder (one entry per sequence, on the model device).

    Attributes:
        audio_len: rows since the current `<|audio_start|>` (inclusive); 0 outside audio.
        flushed: delay rows emitted in the current flush, or -1 when not flushing.
        in_audio: inside an audio block (between `<|audio_start|>` and the forced `<|audio_end|>`).
    """

    def __init__(self, config, prompt_text: torch.LongTensor):
        self.n_vq = config.n_vq
        self.pad_code = config.audio_pad_code
        self.pad_id = config.pad_token_id
        self.start_id = config.audio_start_token_id
        self.end_id = config.audio_end_token_id
        self.gen_id = config.audio_assistant_gen_slot_token_id
        self.delay_id = config.audio_assistant_delay_slot_token_id
        self.im_end_id = config.im_end_token_id
        device = prompt_text.device
        self._outside_banned = torch.tensor([self.pad_id, self.gen_id, self.delay_id, self.end_id], device=device)
        self._inside_allowed = torch.tensor([self.gen_id, self.delay_id], device=device)
        self._codebook = torch.arange(self.n_vq, device=device)

        # A prompt that ends inside an audio block (continuation: `<|audio_start|>` or gen-slot rows) resumes it.
        rows = prompt_text.shape[1]
        positions = torch.arange(rows, device=device).expand_as(prompt_text)
        last_start = torch.where(prompt_text == self.start_id, positions, -1).amax(dim=1)
        last = prompt_text[:, -1]
        self.in_audio = (last_start >= 0) & ((last == self.start_id) | (last == self.gen_id))
        self.audio_len = torch.where(self.in_audio, rows - last_start, 0)
        self.flushed = torch.full_like(self.audio_len, -1)

    def mask_text_scores(self, scores: torch.Tensor, step: int) -> torch.Tensor:
        """Ban the text tokens the grammar forbids at this step (``scores [B, V]``, a new tensor)."""
        inside = self.in_audio[:, None]
        out = scores.masked_fill(inside, float("-inf"))
        out[:, self._outside_banned] = float("-inf")
        out[:, self._inside_allowed] = torch.where(inside, scores[:, self._inside_allowed], float("-inf"))
        if step == 0:
            out[:, self.delay_id] = float("-inf")
        if step <= self.n_vq:
            out[:, self.im_end_id] = float("-inf")
        return out

    def audio_mask(self) -> torch.Tensor:
        """``[B, N]`` bool: codebooks that carry a sampled code in this step's row (the rest is the pad code)."""
        started = self._codebook[None, :] < self.audio_len[:, None]
        draining = (self.flushed[:, None] < 0) | (self._codebook[None, :] >= self.flushed[:, None])
        return started & draining

    def step(self, text: torch.LongTensor, codes: torch.LongTensor) -> torch.LongTensor:
        """Apply the forced tokens to the sampled ``text [B]`` / ``codes [B, N]``, advance, return the row [B, 1+N]."""
        forced_delay = (self.flushed >= 0) & (self.flushed < self.n_vq)
        forced_end = self.flushed == self.n_vq
        text = torch.where(forced_delay, self.delay_id, torch.where(forced_end, self.end_id, text))
        codes = torch.where(self.audio_mask(), codes, self.pad_code)

        opens_or_continues = (text == self.start_id) | (text == self.gen_id) | (text == self.delay_id)
        self.audio_len = torch.where(text == self.end_id, 0, self.audio_len + opens_or_continues.long())
        flushed = torch.where(self.flushed >= 0, self.flushed + 1, torch.where(text == self.delay_id, 1, -1))
        self.flushed = torch.where(flushed > self.n_vq, -1, flushed)
        self.in_audio = (self.in_audio | (text == self.start_id)) & ~forced_end
        return torch.cat([text[:, None], codes], dim=1)


class TextHeadShortcut:
    """Compute only the text-head rows the grammar can use while every sequence is inside an audio block.

    Inside an audio block the grammar allows two text tokens (gen slot, delay slot; the flush rows are forced), so
    the other rows of the text head (155,648 in the released models, the largest matrix read per step of a small
    backbone) would be masked to ``-inf`` anyway. While every unfinished sequence is surely inside a block the decode
    step computes only those rows; as soon as one sequence may be in the text phase (or has finished) the whole head
    is computed, exactly as the plain path.

    Exactness: the allowed rows are computed as one block of ``BLOCK`` head rows (the allowed ids, then repeats), which
    keeps the matrix product on the same kernel path as the full head (a 2-row product reduces in another order, ~1
    ulp off): the logits of the allowed ids are bitwise those of the full head on the CPU BLAS (asserted by
    tests/moss/test_delay_speed.py). The scores are rebuilt as the full ``[B, V]`` tensor (``-inf`` elsewhere, which
    the grammar mask would have written anyway), so masking, logits processors and the draw see exactly the plain
    path's input: same tokens, same scores, same random-number use, greedy and sampled.

    Decision: a row inside a block stays there for ``n_vq + 1 - max(flushed, 0)`` more steps whatever is sampled
    (delay slot, forced flush, forced ``<|audio_end|>``). The all-rows flag is read on the host through
    `LaggedStopFlag` (one step late on CUDA, so the host never stalls; the horizon accounts for the lag).
    """

    BLOCK = 32

    def __init__(self, state: DelayPatternState, vocab_size: int, device: torch.device, enabled: bool = True):
        self.enabled = enabled and vocab_size > self.BLOCK
        self.active = False
        self.vocab_size = vocab_size
        self.state = state
        self.ids = state._inside_allowed
        self.rows = torch.cat([self.ids, self.ids[:1].expand(self.BLOCK - len(self.ids))])
        self.flag = LaggedStopFlag(device) if self.enabled else None

    def forward_kwargs(self) -> dict:
        """Extra keyword of the next decode forward: the head rows to compute (none = the full head)."""
        return {"_text_head_rows": self.rows} if self.active else {}

    def full_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """``[B, BLOCK]`` logits of the last decode step -> ``[B, V]`` (``-inf`` outside the allowed ids)."""
        if not self.active:
            return logits
        full = logits.new_full((logits.shape[0], self.vocab_size), float("-inf"))
        full[:, self.ids] = logits[:, : len(self.ids)]
        return full

    def update(self, unfinished: torch.Tensor) -> None:
        """After a step: may the next decode step use the allowed rows only?"""
        if not self.enabled:
            return
        state = self.state
        horizon = torch.where(state.in_audio & unfinished, state.n_vq + 1 - state.flushed.clamp(min=0), 0)
        self.active = self.flag.push((horizon > self.flag.lag_steps).all())


class DelayAudioFrameStreamer(BaseStreamer):
    """Streamer that receives every audio frame (de-delayed codes ``[N]``) as soon as its last codebook exists.

    `generate(..., streamer=...)` first `put`s the prompt ``[B, T, 1+N]`` (kept as history so a continuation's
    incomplete frames complete), then one row ``[B, 1+N]`` per step. Frame ``t``'s codebook ``j`` is in row
    ``t + j``, so each new row completes exactly one frame per sequence; all-pad frames (text, separators) are skipped.
    Override :meth:`on_frame`, or read ``frames`` (per sequence, a list of ``[N]`` tensors) after generation.
    """

    def __init__(self, n_vq: int, audio_pad_code: int):
        self.n_vq = n_vq
        self.pad_code = audio_pad_code
        self._recent: torch.Tensor | None = None  # [B, N, N]: audio columns of the last N rows
        self.frames: list[list[torch.Tensor]] = []
        self.ended = False

    def put(self, value: torch.Tensor) -> None:
        value = value.detach().cpu()
        if value.dim() == 3:  # the prompt: keep its last N rows, emit nothing
            tail = value[:, -self.n_vq :, 1:]
            pad = tail.new_full((value.shape[0], self.n_vq - tail.shape[1], self.n_vq), self.pad_code)
            self._recent = torch.cat([pad, tail], dim=1)
            self.frames = [[] for _ in range(value.shape[0])]
            return
        if self._recent is None:
            raise ValueError("DelayAudioFrameStreamer needs the prompt first (generate() passes it)")
        self._recent = torch.cat([self._recent[:, 1:], value[:, None, 1:]], dim=1)
        frames = revert_delay_pattern(self._recent)[:, 0]  # [B, N]: the frame whose last codebook just arrived
        for index in (frames != self.pad_code).any(dim=-1).nonzero().flatten().tolist():
            self.frames[index].append(frames[index])
            self.on_frame(index, frames[index])

    def on_frame(self, batch_index: int, frame: torch.Tensor) -> None:
        """Called with the ``[N]`` codes of each completed frame of sequence ``batch_index``."""

    def end(self) -> None:
        self.ended = True


class CodecTTSDelayGenerationMixin(GenerationMixin):
    """`generate()` for token matrices ``[B, T, 1 + N]`` (see the module docstring)."""

    @staticmethod
    def default_generation_config(
        config, base: GenerationConfig | None = None, preset: str = "moss-tts"
    ) -> GenerationConfig:
        """The model's default decoding: a released model's sampling preset, stop on ``<|im_end|>``."""
        generation_config = copy.deepcopy(base) if base is not None else GenerationConfig()
        # a real preset now, not derived from the model config: transformers drops the custom (audio) entries of a
        # `_from_model_config` file when it is loaded again
        generation_config._from_model_config = False
        for key, value in delay_generation_defaults(preset).items():
            setattr(generation_config, key, value)
        generation_config.eos_token_id = config.im_end_token_id
        generation_config.pad_token_id = config.pad_token_id
        if generation_config.max_new_tokens is None:
            generation_config.max_new_tokens = DEFAULT_MAX_NEW_TOKENS  # ~5.5 min of audio, as the Local generator
        return generation_config

    def generate(self, input_ids: torch.LongTensor | None = None, generation_config=None, **kwargs):
        r"""Generate rows after the prompt ``input_ids [B, T, 1 + N]`` (left-padded for batches).

        Sampling settings (the same names as the Local generator, see `codectts.modeling.moss.generation_settings`), as
        keyword arguments or on `generation_config` (defaults: `model.generation_config`, presets
        `DELAY_GENERATION_PRESETS`):

        * text channel: `do_sample`, `temperature`, `top_k`, `top_p` and every other transformers text logits
          processor (`repetition_penalty`, `sequence_bias`, `min_new_tokens`, `logits_processor`, ...); the original
          names `text_temperature` / `text_top_k` / `text_top_p` are aliases (`text_temperature <= 0`: greedy text).
        * audio channels: `audio_do_sample` (default: `do_sample`), `audio_temperature` (<= 0: greedy audio),
          `audio_top_k`, `audio_top_p` (the reference's variants: exactly ``k`` codes kept; nucleus on the
          descending cumulative mass), `audio_repetition_penalty` — applied **also when greedy**, as the reference
          does, per sequence and codebook, or with `audio_repetition_penalty_scope="reference"` on the reference's
          batch/codebook union.
        * `do_sample=False` is greedy for text and audio. Only greedy decoding and sampling are supported (beams,
          assisted decoding or `num_return_sequences > 1` raise `ValueError`).

        Other settings as usual: `max_new_tokens`, `cache_implementation`, `streamer`, `return_dict_in_generate`, ...

        Returns:
            `torch.LongTensor [B, T + steps, 1 + N]`, or `CodecTTSDelayGenerateOutput` with
            `return_dict_in_generate=True`. Generation stops when every sequence emitted `<|im_end|>` (then padded)
            or after `max_new_tokens` rows.
        """
        if input_ids is None:
            input_ids = kwargs.pop("inputs", None)
        if input_ids is None:
            raise ValueError("generate() needs input_ids [batch, rows, 1 + n_vq] (a prompt from the processor)")
        self.check_input_ids(input_ids)
        check_prompt(input_ids, kwargs.get("attention_mask"))
        if kwargs.get("n_vq_for_inference") not in (None, self.config.n_vq):
            raise ValueError("n_vq_for_inference is not supported by the delay-pattern generator (Local only)")
        kwargs.pop("n_vq_for_inference", None)
        generation_config, model_kwargs = prepare_sampling_config(
            self, generation_config, kwargs, delay_generation_defaults(), family="delay-pattern"
        )
        return super().generate(input_ids, generation_config=generation_config, **model_kwargs)

    def _prepare_attention_mask_for_generation(self, inputs_tensor, generation_config, model_kwargs):
        # the standard helper compares 2-D token ids with the pad id; our prompts are 3-D: all rows are real unless
        # a mask says otherwise (left-padded batches must pass their attention_mask)
        return torch.ones(inputs_tensor.shape[:2], dtype=torch.long, device=inputs_tensor.device)

    def _sample(
        self,
        input_ids: torch.LongTensor,
        logits_processor: LogitsProcessorList,
        stopping_criteria: StoppingCriteriaList,
        generation_config: GenerationConfig,
        synced_gpus: bool = False,
        streamer: BaseStreamer | None = None,
        **model_kwargs,
    ) -> CodecTTSDelayGenerateOutput | torch.LongTensor:
        config = self.config
        batch_size = input_ids.shape[0]
        device = input_ids.device
        text_sample = bool(generation_config.do_sample)
        audio_sample = audio_do_sample(generation_config)
        audio_temperature = float(generation_config.audio_temperature or 1.0)
        return_dict = generation_config.return_dict_in_generate
        keep = {
            name: () if return_dict and getattr(generation_config, flag) else None
            for name, flag in (
                ("scores", "output_scores"),
                ("logits", "output_logits"),
                ("audio_scores", "output_scores"),
                ("audio_logits", "output_logits"),
                ("attentions", "output_attentions"),
                ("hidden_states", "output_hidden_states"),
            )
        }

        state = DelayPatternState(config, input_ids[..., 0])
        # the MOSS-TTS reference's variants of top-k / top-p / draw / penalised greedy (see token_selection)
        text_sampling = ChannelSampling(do_sample=text_sample, draw_method="multinomial")
        audio_sampling = ChannelSampling(
            do_sample=audio_sample,
            temperature=audio_temperature,
            top_k=int(generation_config.audio_top_k or 0),
            top_p=float(generation_config.audio_top_p or 1.0),
            repetition_penalty=float(generation_config.audio_repetition_penalty or 1.0),
            top_k_ties="drop",
            top_p_rule="exclusive",
            draw_method="multinomial",
            penalize_greedy=True,
        )
        history = RepetitionHistory(
            input_ids[..., 1:],
            config.audio_num_embeddings,
            ignore_code=config.audio_pad_code,
            scope=generation_config.audio_repetition_penalty_scope or "sequence",
        )
        penalised = audio_sampling.repetition_penalty != 1.0
        finished_row = input_ids.new_tensor([config.pad_token_id] + [config.audio_pad_code] * config.n_vq)
        unfinished = torch.ones(batch_size, dtype=torch.bool, device=device)
        stop_flag = LaggedStopFlag(device, lag=streamer is None)

        model_forward = (
            self.get_compiled_call(generation_config.compile_config)
            if self._valid_auto_compile_criteria(model_kwargs, generation_config)
            else self.__call__
        )
        outputs = prefill(self, input_ids, generation_config, model_kwargs)
        step_kwargs = decode_step_kwargs(self)
        # raw text logits asked for, or heads reading other layers: always the full head
        shortcut = TextHeadShortcut(
            state,
            config.text_config.vocab_size,
            device,
            enabled=keep["logits"] is None and model_kwargs.get("hidden_out_layers") is None,
        )

        step = 0
        undo = 0
        while True:
            if step > 0:
                model_inputs = self.prepare_inputs_for_generation(input_ids, **step_kwargs, **model_kwargs)
                with self._optimize_model_for_decode():
                    outputs = model_forward(**model_inputs, return_dict=True, **shortcut.forward_kwargs())
            model_kwargs = update_model_kwargs_for_generation(self, outputs, model_kwargs)

            text_logits = shortcut.full_logits(outputs.logits[:, -1].to(dtype=torch.float32, device=device, copy=True))
            audio_logits = outputs.audio_logits[:, -1].to(dtype=torch.float32, device=device, copy=True)

            text_scores = logits_processor(input_ids[..., 0], state.mask_text_scores(text_logits, step))
            audio_scores = process_logits(audio_logits, audio_sampling, history.mask() if penalised else None)

            row = state.step(choose(text_scores, text_sampling), choose(audio_scores, audio_sampling))
            row = torch.where(unfinished[:, None], row, finished_row)
            if penalised:
                history.update(row[:, 1:])
            input_ids = torch.cat([input_ids, row[:, None]], dim=1)
            step += 1

            if return_dict:
                for name, value in (
                    ("scores", text_scores),
                    ("logits", text_logits),
                    ("audio_scores", audio_scores),
                    ("audio_logits", audio_logits),
                    ("attentions", getattr(outputs, "attentions", None)),
                    ("hidden_states", getattr(outputs, "hidden_states", None)),
                ):
                    if keep[name] is not None:
                        keep[name] += (value,)
            if streamer is not None:
                streamer.put(row.cpu())
            del outputs

            unfinished = unfinished & ~stopping_criteria(input_ids[..., 0], keep["scores"])
            shortcut.update(unfinished)
            if stop_flag.push(~unfinished.any()):
                undo = stop_flag.lag_steps  # rows generated after everything had finished
                break
            if input_ids.shape[1] >= generation_config.max_length:
                break

        if undo:
            input_ids = input_ids[:, :-undo]
            for name in keep:
                if keep[name] is not None:
                    keep[name] = keep[name][:-undo]
        if streamer is not None:
            streamer.end()
        if not return_dict:
            return input_ids
        return CodecTTSDelayGenerateOutput(
            sequences=input_ids,
            scores=keep["scores"],
            logits=keep["logits"],
            audio_scores=keep["audio_scores"],
            audio_logits=keep["audio_logits"],
            attentions=keep["attentions"],
            hidden_states=keep["hidden_states"],
            **{CACHE_KWARG: cache_from_kwargs(model_kwargs)},
        )
