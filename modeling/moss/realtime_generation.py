"""Generation for MOSS-TTS-Realtime: one per-frame step behind the streaming session and the batched generation.

Text is an input stream that runs ``text_lead`` (12) tokens ahead of the audio:

* **prefill**: the prompt rows plus ``m`` text rows ``[text_j, pad...]`` (``m = min(L, 12)``; in a streaming session
  the first 12 queued tokens, or all of them when the text ends earlier) with BOS in codebook 0 of the last row; the
  backbone state of that row seeds frame 0;
* **step** ``k >= 1``: one row ``[next text token or <|text_pad|>, frame k-1]`` → frame ``k``;
* a sequence stops at the first frame whose codebook 0 is EOS (1026); that frame is never audio and never fed back.

:class:`RealtimeFrameStepper` owns the backbone KV cache, the local KV cache, the windowed repetition history and the
"finished" flags of a batch, and produces one frame per call (:meth:`RealtimeFrameStepper.prefill` /
:meth:`RealtimeFrameStepper.step`); :meth:`CodecTTSRealtimeGenerationMixin.generate_speech` (non-streaming, batched)
and :class:`RealtimeSession` (streaming, batch 1, multi-turn) are thin schedules around it.

Sampling per codebook (the original's procedure, identical for all 16 codebooks): repetition penalty over the
codebook's codes in the item's last ``repetition_window`` frames of this turn (``l < 0 → l·p``, else ``l / p``;
applied in greedy mode too, never to frame 0), then greedy argmax, or temperature → top-k (values ≥ the k-th kept) →
top-p (transformers' ascending-cumsum rule) → one categorical draw by the exponential race (same law as
``torch.multinomial``, but CUDA-graph safe). Nothing masks PAD/BOS/EOS (as in the original).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import torch
from transformers.cache_utils import DynamicCache

from ..stop_flag import LaggedStopFlag
from ..token_selection import ChannelSampling, select_tokens

__all__ = [
    "DEFAULT_MAX_FRAMES",
    "CodecTTSRealtimeGenerationMixin",
    "RealtimeFrameStepper",
    "RealtimeSampling",
    "RealtimeSession",
    "RealtimeSessionClosedError",
]

class RealtimeSessionClosedError(ValueError):
    """Text was pushed (or the text ended) after ``end_text()`` closed the turn: start one with ``next_turn``."""


# The original's default budget: max_length 1000 steps after frame 0 = 1001 frames (EOS frame included).
DEFAULT_MAX_FRAMES = 1001


@dataclass(frozen=True)
class RealtimeSampling:
    """Per-codebook sampling settings (defaults: the release's recommended 0.8 / 30 / 0.6 / 1.1 over 50 frames).

    ``do_sample=False`` or ``temperature <= 0`` is greedy (the repetition penalty still applies, as in the original);
    ``top_k`` 0/None and ``top_p`` None/>= 1 disable those filters; ``repetition_penalty`` 1.0 disables the penalty;
    ``repetition_window`` None or <= 0 means the whole turn.
    """

    do_sample: bool = True
    temperature: float = 0.8
    top_k: int | None = 30
    top_p: float | None = 0.6
    repetition_penalty: float = 1.1
    repetition_window: int | None = 50

    def __post_init__(self):
        if not isinstance(self.do_sample, bool):
            raise TypeError(f"do_sample must be a bool, got {self.do_sample!r}")
        if self.temperature is None or not isinstance(self.temperature, (int, float)):
            raise ValueError(f"temperature must be a number (<= 0 means greedy), got {self.temperature!r}")
        if self.top_k is not None and (isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 0):
            raise ValueError(f"top_k must be a non-negative int or None (0/None disables it), got {self.top_k!r}")
        if self.top_p is not None and not 0.0 < float(self.top_p) <= 1.0:
            raise ValueError(f"top_p must be in (0, 1] or None (1/None disables it), got {self.top_p!r}")
        if not isinstance(self.repetition_penalty, (int, float)) or not self.repetition_penalty > 0:
            raise ValueError(f"repetition_penalty must be > 0 (1.0 disables it), got {self.repetition_penalty!r}")
        window = self.repetition_window
        if window is not None and (isinstance(window, bool) or not isinstance(window, int)):
            raise ValueError(f"repetition_window must be an int or None (None/<= 0: the whole turn), got {window!r}")

    @property
    def greedy(self) -> bool:
        return not self.do_sample or self.temperature <= 0

    @cached_property
    def channel(self) -> ChannelSampling:
        """The shared toolbox's settings for this procedure: transformers' top-k (ties kept) and top-p, the
        exponential-race draw, and the penalty applied in greedy mode too."""
        return ChannelSampling(
            do_sample=self.do_sample,
            temperature=float(self.temperature),
            top_k=self.top_k,
            top_p=self.top_p,
            repetition_penalty=float(self.repetition_penalty),
            top_k_ties="keep",
            top_p_rule="transformers",
            draw_method="exponential_race",
            penalize_greedy=True,
        )

    def select(self, logits: torch.Tensor, seen: torch.Tensor | None, generator=None) -> torch.Tensor:
        """One id per row of ``logits`` [B, A] (``seen`` [B, A] bool: codes in the penalty window)."""
        return select_tokens(logits, self.channel, seen, generator)


def _check_max_frames(max_frames) -> int:
    if isinstance(max_frames, bool) or not isinstance(max_frames, int) or max_frames < 1:
        raise ValueError(f"max_frames must be a positive int (frames per turn, the EOS frame included), got {max_frames!r}")
    return max_frames


class RealtimeFrameStepper:
    """The per-frame step of a batch: backbone row(s) in, one frame ``[B, n_vq]`` out.

    Keeps the backbone cache across calls (and across turns: :meth:`new_turn` only resets the per-turn state).
    ``attention_mask`` is tracked only when the batch has padding (``prefill(..., attention_mask=...)``): each step
    then appends ``not finished`` for the row it feeds, so finished rows stay invisible (they keep being computed, as
    in the original). ``trace`` (a list) receives ``(rows_fed, backbone_state)`` of every call when set.
    """

    def __init__(self, model, batch_size: int, sampling: RealtimeSampling, max_frames: int, generator=None):
        config = model.config
        self.model = model
        self.config = config
        self.batch_size = batch_size
        self.sampling = sampling
        self.max_frames = _check_max_frames(max_frames)
        self.generator = generator
        param = next(model.parameters())
        self.device, self.dtype = param.device, param.dtype
        self.cache = DynamicCache(config=config.text_config)
        self.attention_mask: torch.Tensor | None = None
        self.local_cache = model.local_transformer.new_cache(batch_size, self.dtype, self.device)
        window = sampling.repetition_window
        self.window = max_frames if window is None or window <= 0 else min(window, max_frames)
        self.trace: list | None = None
        self.new_turn()

    def new_turn(self) -> None:
        """Forget the per-turn state (penalty history, finished flags, frame count); keep the KV cache."""
        config = self.config
        # history[b, w, k]: codebook-k code of one of the last `window` frames; `audio_vocab_size` = empty slot
        self.history = torch.full(
            (self.batch_size, self.window, config.n_vq), config.audio_vocab_size, dtype=torch.long, device=self.device
        )
        self.finished = torch.zeros(self.batch_size, dtype=torch.bool, device=self.device)
        self.last_frame: torch.Tensor | None = None
        self.frames_done = 0

    @property
    def cache_length(self) -> int:
        return self.cache.get_seq_length()

    # ------------------------------------------------------------------ building blocks
    def _backbone(self, rows: torch.Tensor) -> torch.Tensor:
        out = self.model.model(
            input_ids=rows, attention_mask=self.attention_mask, cache=self.cache, use_cache=True
        )
        hidden = out.last_hidden_state[:, -1]
        if self.trace is not None:
            self.trace.append((rows.detach().cpu(), hidden.detach().float().cpu()))
        return hidden

    def _seen(self) -> torch.Tensor | None:
        if self.sampling.repetition_penalty == 1.0 or self.frames_done == 0:
            return None
        size = self.config.audio_vocab_size
        seen = torch.zeros(self.batch_size, self.config.n_vq, size + 1, dtype=torch.bool, device=self.device)
        seen.scatter_(2, self.history.transpose(1, 2), True)
        return seen[..., :size]

    def _frame(self, hidden: torch.Tensor) -> torch.Tensor:
        frame = self.model.decode_frame(hidden, self.local_cache, self.sampling, self._seen(), self.generator)
        self.history = torch.cat([self.history[:, 1:], frame.unsqueeze(1)], dim=1)
        self.finished = self.finished | (frame[:, 0] == self.config.audio_eos_code)
        self.last_frame = frame
        self.frames_done += 1
        return frame

    # ------------------------------------------------------------------ the calls
    def feed(self, rows: torch.Tensor) -> None:
        """Feed rows [B, S, 17] into the cache without producing a frame (a prompt fed ahead of its text)."""
        rows = rows.to(self.device)
        if self.attention_mask is not None:
            ones = torch.ones(rows.shape[:2], dtype=torch.long, device=self.device)
            self.attention_mask = torch.cat([self.attention_mask, ones], dim=1)
        self._backbone(rows)

    def prefill(self, rows: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Feed the turn's prompt + text-prefix rows [B, S, 17] (BOS on the last); return frame 0 [B, n_vq]."""
        rows = rows.to(self.device)
        if attention_mask is not None or self.attention_mask is not None:
            if attention_mask is None:
                attention_mask = torch.ones(rows.shape[:2], dtype=torch.long, device=self.device)
            new = attention_mask.to(self.device).long()
            self.attention_mask = new if self.attention_mask is None else torch.cat([self.attention_mask, new], dim=1)
        return self._frame(self._backbone(rows))

    def step(self, text_ids: torch.Tensor) -> torch.Tensor:
        """Feed ``[text_ids[b], previous frame]`` for every item; return the next frame [B, n_vq]."""
        if self.last_frame is None:
            raise RuntimeError("step() needs a prefill() first")
        row = torch.cat([text_ids.to(self.device).long().view(-1, 1), self.last_frame], dim=1).unsqueeze(1)
        if self.attention_mask is not None:
            self.attention_mask = torch.cat([self.attention_mask, (~self.finished).long().unsqueeze(1)], dim=1)
        return self._frame(self._backbone(row))


def _text_prefix_rows(config, text_ids: torch.Tensor) -> torch.Tensor:
    """Rows ``[text_j, pad...]`` of the text prefix with BOS in codebook 0 of the last row: [m, 17]."""
    rows = torch.full((len(text_ids), config.num_channels), config.audio_pad_code, dtype=torch.long)
    rows[:, 0] = text_ids
    rows[-1, 1] = config.audio_bos_code
    return rows


def _as_frames(frames: list[torch.Tensor], n_vq: int) -> torch.Tensor:
    if not frames:
        return torch.zeros((0, n_vq), dtype=torch.long)
    return torch.stack(frames).cpu()


class RealtimeSession:
    """A streaming synthesis session (batch 1): push text as it arrives, get the frames it makes possible.

    Made by :meth:`CodecTTSRealtimeGenerationMixin.start_session`. Schedule (the original streaming session's):
    pushed text is queued as token ids; once ``text_lead`` (12) tokens are queued the prompt and those 12 rows are
    prefilled (frame 0), and from then on every queued token feeds one step (one frame). :meth:`end_text` prefills
    with **all** queued tokens if that had not happened yet (so a short text leads by its whole length), feeds what
    is left, then steps with ``<|text_pad|>`` until codebook 0 emits EOS or ``max_frames`` frames were produced.

    Every call returns the frames it produced, ``LongTensor [k, n_vq]`` (``k`` may be 0); the EOS frame is never
    returned. ``frames`` holds all frames of the current turn. :meth:`next_turn` starts a new turn on top of the kept
    KV cache (multi-turn).

    Text tokenization (``text_tokenization`` of ``start_session``):

    * ``"segments"`` (default, the original's): text deltas accumulate in a character buffer that is cut into
      segments at punctuation (plus the spaces after it) or a newline once the segment has ``min_text_chunk_chars``
      (8) characters, or after the last space once the buffer holds ``text_buffer_size`` (32) characters; every
      segment is tokenized on its own (ids can differ from tokenizing the whole text at once).
    * ``"stable_prefix"``: the whole text so far is re-tokenized at every push and only ids at least 3 tokens from
      its end are released (``end_text`` releases the rest): the ids equal those of the whole text in practice,
      at the cost of 3 tokens of extra latency.

    Host synchronisation: the session reads codebook 0 of every frame before feeding the next row (one small
    device-to-host read per frame), because a frame after EOS must never enter the KV cache that the next turn reuses.
    ``generate_speech`` has no such constraint and reads its stop flag one step late instead.
    """

    def __init__(
        self,
        model,
        processor,
        stepper: RealtimeFrameStepper,
        prompt_rows: torch.Tensor,
        text_tokenization: str = "segments",
        system_rows: torch.Tensor | None = None,
        precompute_prompt: bool = False,
        min_text_chunk_chars: int = 8,
        text_buffer_size: int = 32,
    ):
        from ...processing.moss.realtime_text import StablePrefixTokenizer, TextSegmenter

        if text_tokenization == "segments":
            self._make_text_splitter = lambda: TextSegmenter(
                processor.tokenizer, min_chars=min_text_chunk_chars, max_chars=text_buffer_size
            )
        elif text_tokenization == "stable_prefix":
            self._make_text_splitter = lambda: StablePrefixTokenizer(processor.tokenizer)
        else:
            raise ValueError(f"text_tokenization must be 'segments' or 'stable_prefix', got {text_tokenization!r}")
        self.model = model
        self.processor = processor
        self.stepper = stepper
        self.config = model.config
        self._system_rows = system_rows
        self._precompute_prompt = bool(precompute_prompt)
        self._start_turn(prompt_rows)

    def _start_turn(self, prompt_rows: torch.Tensor) -> None:
        if self._precompute_prompt:  # the prompt's KV is ready before the text arrives (lower first-frame latency)
            self.stepper.feed(prompt_rows.unsqueeze(0))
            prompt_rows = prompt_rows[:0]
        self._prompt_rows = prompt_rows
        self._queue: list[int] = []
        self._text_splitter = self._make_text_splitter()
        self._prefilled = False
        self._text_ended = False
        self._done = False
        self.frames: list[torch.Tensor] = []

    # ------------------------------------------------------------------ state
    @property
    def finished(self) -> bool:
        """True once the turn emitted EOS or reached ``max_frames``."""
        return self._done

    @property
    def text_ended(self) -> bool:
        return self._text_ended

    @property
    def cache_length(self) -> int:
        """Rows in the backbone KV cache (all turns so far)."""
        return self.stepper.cache_length

    # ------------------------------------------------------------------ internals
    def _emit(self, frame: torch.Tensor, out: list[torch.Tensor]) -> None:
        if bool(frame[0, 0] == self.config.audio_eos_code):
            self._done = True
            return
        out.append(frame[0])
        self.frames.append(frame[0])
        if self.stepper.frames_done >= self.stepper.max_frames:
            self._done = True

    def _prefill(self, count: int, out: list[torch.Tensor]) -> None:
        ids = torch.tensor(self._queue[:count], dtype=torch.long)
        del self._queue[:count]
        rows = torch.cat([self._prompt_rows, _text_prefix_rows(self.config, ids)], dim=0)
        self._prefilled = True
        self._emit(self.stepper.prefill(rows.unsqueeze(0)), out)

    def _advance(self, out: list[torch.Tensor]) -> None:
        """Prefill once enough text is queued, then one step per queued token."""
        if self._done:
            self._queue.clear()
            return
        if not self._prefilled:
            if len(self._queue) < self.config.text_lead:
                return
            self._prefill(self.config.text_lead, out)
        while self._queue and not self._done:
            token = self._queue.pop(0)
            self._emit(self.stepper.step(torch.tensor([token], device=self.stepper.device)), out)
        if self._done:
            self._queue.clear()

    def _check_open(self, what: str) -> None:
        if self._text_ended:
            raise RealtimeSessionClosedError(
                f"{what} after end_text(): the turn's text is closed; call session.next_turn(...) to start a new turn"
            )

    # ------------------------------------------------------------------ public API
    @torch.inference_mode()
    def push_text(self, text: str) -> torch.Tensor:
        """Add a text delta (e.g. an LLM's next chunk); returns the frames it produced, ``LongTensor [k, n_vq]``."""
        self._check_open("push_text")
        if not isinstance(text, str):
            raise TypeError(f"push_text takes a str, got {type(text).__name__} (use push_text_ids for token ids)")
        self._queue.extend(self._text_splitter.push(text))
        out: list[torch.Tensor] = []
        self._advance(out)
        return _as_frames(out, self.config.n_vq)

    @torch.inference_mode()
    def push_text_ids(self, ids: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """Add text token ids; returns the frames they produced, ``LongTensor [k, n_vq]``."""
        self._check_open("push_text_ids")
        if isinstance(ids, torch.Tensor):
            if ids.dtype.is_floating_point or ids.dim() > 1:
                raise ValueError(f"ids must be a 1-D integer tensor or a list of ints, got {tuple(ids.shape)} {ids.dtype}")
            ids = ids.tolist()
        ids = list(ids)
        vocab = self.config.vocab_size
        bad = [i for i in ids if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < vocab]
        if bad:
            raise ValueError(f"ids must be ints in [0, {vocab}) (the text vocabulary), got {bad[:8]}")
        self._queue.extend(ids)
        out: list[torch.Tensor] = []
        self._advance(out)
        return _as_frames(out, self.config.n_vq)

    @torch.inference_mode()
    def end_text(self) -> torch.Tensor:
        """Close the turn's text; returns the remaining frames (until EOS or ``max_frames``), ``LongTensor [k, n_vq]``."""
        self._check_open("end_text")
        self._text_ended = True
        self._queue.extend(self._text_splitter.flush())
        out: list[torch.Tensor] = []
        if not self._prefilled and not self._done:
            if not self._queue:
                raise ValueError("empty text: push some text (push_text / push_text_ids) before end_text()")
            self._prefill(len(self._queue), out)
        self._advance(out)
        text_pad = torch.tensor([self.config.text_pad_token_id], device=self.stepper.device)
        while not self._done:
            self._emit(self.stepper.step(text_pad), out)
        return _as_frames(out, self.config.n_vq)

    def stream_audio(self, text_deltas, chunk_frames: int = 1):
        """Speak an iterable of text deltas (e.g. an LLM's streamed reply) and yield audio chunks as they become
        available (float32 CPU tensors at the codec's rate), then close the text and yield the rest.

        The chunks concatenate to ``processor.decode_audio_codes(all frames)`` (the codec's streaming state carries
        its context across chunks). Needs a processor with a codec; ``self.frames`` holds the frames afterwards.
        """
        stream = self.processor.stream_waveform(chunk_frames=chunk_frames)
        for delta in text_deltas:
            frames = self.push_text(delta) if isinstance(delta, str) else self.push_text_ids(delta)
            audio = stream.push(frames)
            if audio.numel():
                yield audio
        for audio in (stream.push(self.end_text()), stream.flush()):
            if audio.numel():
                yield audio

    @torch.inference_mode()
    def next_turn(self, user_text: str | None = None, user_audio_codes=None) -> None:
        """Start a new turn on top of the kept KV cache: the user turn (``user_text`` and ``user_audio_codes``
        ``[T, n_vq]`` together) or, without one, the assistant header, then push the new reply's text.

        Text of the previous turn that was not consumed yet is dropped; its EOS frame is never in the cache (as in
        the original, the next turn's rows follow its last fed row directly).
        """
        rows = self.processor.turn_prompt_rows(user_text, user_audio_codes)
        if self.stepper.cache_length == 0 and self._system_rows is not None:
            rows = torch.cat([self._system_rows, rows])  # nothing was fed yet: the system prompt still opens
        self.stepper.new_turn()
        self._start_turn(rows)


class CodecTTSRealtimeGenerationMixin:
    """``start_session`` (streaming) and ``generate_speech`` (batched) for the Realtime model."""

    # ------------------------------------------------------------------ one frame of the local loop
    def decode_frame(
        self,
        backbone_hidden: torch.Tensor,
        local_cache,
        sampling: RealtimeSampling,
        seen: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        logits_out: list | None = None,
    ) -> torch.Tensor:
        """The 16 codes of the next frame from the backbone state ``backbone_hidden`` [B, H] → [B, n_vq].

        ``seen`` [B, n_vq, A] bool marks the codes in each codebook's repetition window (None: no penalty).
        ``logits_out`` (a list) receives every codebook's raw logits [B, A] (before the penalty) when given.
        """
        local_in = backbone_hidden.unsqueeze(1)
        codes = []
        n_vq = self.config.n_vq
        for k in range(n_vq):
            out = self.local_transformer(local_in, cache=local_cache, start=k)[:, 0]
            logits = self.lm_heads[k](out)
            if logits_out is not None:
                logits_out.append(logits.detach())
            code = sampling.select(logits, None if seen is None else seen[:, k], generator)
            codes.append(code)
            if k < n_vq - 1:
                local_in = self.local_transformer.embed_tokens[k](code).unsqueeze(1)
        return torch.stack(codes, dim=1)

    @staticmethod
    def _sampling(do_sample, temperature, top_k, top_p, repetition_penalty, repetition_window) -> RealtimeSampling:
        return RealtimeSampling(
            do_sample=do_sample,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            repetition_penalty=repetition_penalty,
            repetition_window=repetition_window,
        )

    @staticmethod
    def _check_processor(processor) -> None:
        if not callable(getattr(processor, "turn_prompt_rows", None)):
            raise TypeError(
                "processor must be a CodecTTSRealtimeProcessor (AutoProcessor.from_pretrained on the converted "
                f"Realtime folder), got {type(processor).__name__}"
            )

    # ------------------------------------------------------------------ streaming
    @torch.inference_mode()
    def start_session(
        self,
        processor,
        voice_codes=None,
        user_text: str | None = None,
        user_audio_codes=None,
        do_sample: bool = True,
        temperature: float = 0.8,
        top_k: int | None = 30,
        top_p: float | None = 0.6,
        repetition_penalty: float = 1.1,
        repetition_window: int | None = 50,
        max_frames: int = DEFAULT_MAX_FRAMES,
        *,
        text_tokenization: str = "segments",
        precompute_prompt: bool = False,
        generator: torch.Generator | None = None,
    ) -> RealtimeSession:
        """Open a streaming session (batch 1); see :class:`RealtimeSession` for the push / end / next-turn calls.

        Args:
            processor: the model's `CodecTTSRealtimeProcessor`.
            voice_codes (`LongTensor [T, 16]`, *optional*): codes of a voice prompt (adds the voice context turn).
            user_text, user_audio_codes (`LongTensor [T, 16]`): the user turn this reply answers (both or neither).
                Without them the prompt ends with the rows of ``"<|im_end|>\\n<|im_start|>assistant\\n"``.
            do_sample, temperature, top_k, top_p, repetition_penalty, repetition_window: see `RealtimeSampling`
                (defaults: the release's 0.8 / 30 / 0.6 / 1.1 over 50 frames, sampling).
            max_frames: frames per turn, the EOS frame included (the original's ``max_length + 1``).
            text_tokenization: ``"segments"`` (default, the original's) or ``"stable_prefix"``.
            precompute_prompt: feed each turn's prompt rows at once (at ``start_session`` / ``next_turn``) instead of
                together with the first text rows, as the original does: the first frame then only waits for the 12
                text rows. Same rows and positions; float rounding of the attention sums can differ slightly.
            generator: RNG of the categorical draws.
        """
        self._check_processor(processor)
        sampling = self._sampling(do_sample, temperature, top_k, top_p, repetition_penalty, repetition_window)
        system = processor.system_rows(voice_codes)
        rows = torch.cat([system, processor.turn_prompt_rows(user_text, user_audio_codes)])
        stepper = RealtimeFrameStepper(self, 1, sampling, max_frames, generator)
        return RealtimeSession(
            self, processor, stepper, rows, text_tokenization=text_tokenization, system_rows=system,
            precompute_prompt=precompute_prompt,
        )

    # ------------------------------------------------------------------ non-streaming batch
    @torch.inference_mode()
    def generate_speech(
        self,
        processor,
        texts: Sequence[str],
        voice_codes=None,
        max_frames: int = DEFAULT_MAX_FRAMES,
        do_sample: bool = True,
        temperature: float = 0.8,
        top_k: int | None = 30,
        top_p: float | None = 0.6,
        repetition_penalty: float = 1.1,
        repetition_window: int | None = 50,
        generator: torch.Generator | None = None,
    ) -> list[torch.Tensor]:
        """Synthesize a batch of texts at once (the original non-streaming inferencer's prompt and schedule).

        Each item: system prompt (+ voice context turn) + ``"<|im_start|>assistant\\n"`` + ``min(L, 12)`` text rows
        (BOS on the last), left padded with ``[pad_token_id, pad...]`` rows (attention 0); then one text token (or
        ``<|text_pad|>``) per step. Finished items keep being computed (masked) until all finished or ``max_frames``.

        Args:
            processor: the model's `CodecTTSRealtimeProcessor`.
            texts (`list[str]`): the texts (non-empty).
            voice_codes: ``None`` or one ``LongTensor [T_i, 16]`` (or ``None``) per text.
            max_frames: frames per item, the EOS frame included.
            do_sample, temperature, top_k, top_p, repetition_penalty, repetition_window: as `start_session`.
        Returns:
            `list[LongTensor [T_i, 16]]`: the frames before each item's EOS (on the CPU).
        """
        self._check_processor(processor)
        if isinstance(texts, str) or not isinstance(texts, Sequence) or len(texts) == 0:
            raise ValueError("texts must be a non-empty list of strings (wrap a single text in a list)")
        if voice_codes is None:
            voice_codes = [None] * len(texts)
        elif isinstance(voice_codes, torch.Tensor) or not isinstance(voice_codes, Sequence):
            raise ValueError("voice_codes must be None or a list with one LongTensor [T, 16] (or None) per text")
        if len(voice_codes) != len(texts):
            raise ValueError(f"voice_codes has {len(voice_codes)} entries for {len(texts)} texts")
        sampling = self._sampling(do_sample, temperature, top_k, top_p, repetition_penalty, repetition_window)
        max_frames = _check_max_frames(max_frames)
        config = self.config
        lead = config.text_lead

        text_ids = [processor.encode_text(t, name=f"texts[{i}]") for i, t in enumerate(texts)]
        items = [
            torch.cat([processor.inference_prompt_rows(voice), _text_prefix_rows(config, torch.tensor(ids[:lead]))])
            for ids, voice in zip(text_ids, voice_codes)
        ]
        rows, mask = processor.left_pad_rows(items)
        batch = len(items)
        # the text token of every step k >= 1 (text_pad once an item's text is exhausted)
        steps = max_frames - 1
        step_text = torch.full((batch, max(steps, 0)), config.text_pad_token_id, dtype=torch.long)
        for b, ids in enumerate(text_ids):
            rest = torch.tensor(ids[lead : lead + steps], dtype=torch.long)
            step_text[b, : len(rest)] = rest

        stepper = RealtimeFrameStepper(self, batch, sampling, max_frames, generator)
        step_text = step_text.to(stepper.device)
        frames = [stepper.prefill(rows, mask)]
        stop_flag = LaggedStopFlag(stepper.device)  # no host stall per frame on CUDA
        done = stop_flag.push(stepper.finished.all())
        for k in range(1, max_frames):
            if done:
                break
            frames.append(stepper.step(step_text[:, k - 1]))
            done = stop_flag.push(stepper.finished.all())
        all_frames = torch.stack(frames, dim=1).cpu()  # [B, T, n_vq]
        results = []
        for b in range(batch):
            eos = (all_frames[b, :, 0] == config.audio_eos_code).nonzero()
            end = int(eos[0, 0]) if len(eos) else all_frames.shape[1]
            results.append(all_frames[b, :end].clone())
        return results
