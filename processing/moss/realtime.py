"""``CodecTTSRealtimeProcessor``: the rows MOSS-TTS-Realtime reads, training examples, and codes back to audio.

A row is 17 ids: column 0 a text token, columns 1..16 one id per codebook (``audio_pad_code`` where a row carries
no audio). Building blocks (the original's prompt layouts, spec §4):

* :meth:`system_rows` — the system prompt, plus the voice-clone context turn when ``voice_codes [T, 16]`` are given
  (its ``<|audio_pad|>`` rows carry the codes);
* :meth:`turn_rows` — one chat turn with speech: prefix, the text, ``<|text_pad|>`` rows, and in the audio columns
  BOS on the row ``min(L, 12) - 1`` after the prefix, the frames, then EOS (the audio lags the text by ``min(L, 12)``);
* :meth:`session_prompt_rows` / :meth:`turn_prompt_rows` — what a streaming session feeds before the reply's text;
  :meth:`inference_prompt_rows` — the non-streaming inferencer's prompt (system + ``<|im_start|>assistant\\n``);
* :meth:`build_training_example` / :meth:`collate_training_examples` — the reference fine-tuning format;
* :meth:`decode_audio_codes` / :meth:`stream_waveform` — frames to audio through the bundled codec (levels 0..15).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers.processing_utils import ProcessorMixin

__all__ = ["CodecTTSRealtimeProcessor", "RealtimeWaveformStream"]

AUDIO_TOKENIZER_SUBFOLDER = "audio_tokenizer"
IGNORE_INDEX = -100

SYSTEM_PROMPT = (
    "<|im_start|>system\nYou are a highly expressive text-to-speech (TTS) engine developed by Mosi Intelligence. \n"
    "You possess natural language understanding, emotional modeling, and multi-style speech generation capabilities, "
    "allowing you to generate the corresponding speech based on the text given in the assistant.<|im_end|>\n"
)
VOICE_CONTEXT_PREFIX = "<|im_start|>context\nThe assistant section should be synthesized using the following voice timbre:"
AUDIO_PLACEHOLDER = "<|audio_pad|>"
TURN_END = "<|im_end|>\n"


def _turn_start(role: str) -> str:
    return f"<|im_start|>{role}\n"


class CodecTTSRealtimeProcessor(ProcessorMixin):
    r"""Processor of MOSS-TTS-Realtime (text tokenizer + optional codec).

    Args:
        tokenizer: the text tokenizer (Qwen3 BPE with ``<|audio_pad|>`` and ``<|text_pad|>``).
        audio_tokenizer: the codec (``CodecTTSAudioTokenizerModel``), optional: needed only to turn codes into audio.
        n_vq: codebooks per frame (16). codebook_size: real codes per codebook (1024).
        audio_pad_code, audio_bos_code, audio_eos_code: the special audio ids (1024 / 1025 / 1026).
        text_pad_token_id: ``<|text_pad|>`` (151655). audio_placeholder_token_id: ``<|audio_pad|>`` (151654).
        text_lead: text tokens the audio lags behind (12). sampling_rate: the codec's rate (24000).
    """

    tokenizer_class = "AutoTokenizer"

    def __init__(
        self,
        tokenizer=None,
        audio_tokenizer=None,
        chat_template: str | None = None,
        n_vq: int = 16,
        codebook_size: int = 1024,
        audio_pad_code: int = 1024,
        audio_bos_code: int = 1025,
        audio_eos_code: int = 1026,
        text_pad_token_id: int = 151655,
        audio_placeholder_token_id: int = 151654,
        text_lead: int = 12,
        sampling_rate: int = 24000,
        **kwargs,
    ):
        if tokenizer is None:
            raise ValueError("CodecTTSRealtimeProcessor needs a text tokenizer")
        super().__init__(tokenizer, chat_template=chat_template, **kwargs)
        self.n_vq = int(n_vq)
        self.codebook_size = int(codebook_size)
        self.audio_pad_code = int(audio_pad_code)
        self.audio_bos_code = int(audio_bos_code)
        self.audio_eos_code = int(audio_eos_code)
        self.text_pad_token_id = int(text_pad_token_id)
        self.audio_placeholder_token_id = int(audio_placeholder_token_id)
        self.text_lead = int(text_lead)
        self.sampling_rate = int(sampling_rate)
        self.audio_tokenizer = None
        if audio_tokenizer is not None:
            self.set_audio_tokenizer(audio_tokenizer)
        for name in ("text_pad_token_id", "audio_placeholder_token_id"):
            if not 0 <= getattr(self, name) < len(tokenizer):
                raise ValueError(f"{name}={getattr(self, name)} is outside the tokenizer vocabulary ({len(tokenizer)})")

    # ------------------------------------------------------------------ construction / persistence
    @classmethod
    def from_model_config(cls, model_config, tokenizer, audio_tokenizer=None, **kwargs) -> CodecTTSRealtimeProcessor:
        values = {
            name: getattr(model_config, name)
            for name in (
                "n_vq", "codebook_size", "audio_pad_code", "audio_bos_code", "audio_eos_code", "text_pad_token_id",
                "audio_placeholder_token_id", "text_lead", "sampling_rate",
            )
        }
        values.update(kwargs)
        return cls(tokenizer=tokenizer, audio_tokenizer=audio_tokenizer, **values)

    def set_audio_tokenizer(self, audio_tokenizer) -> None:
        """Attach a codec; its sampling rate must match and it must have at least ``n_vq`` quantizers."""
        if not callable(getattr(audio_tokenizer, "decode", None)):
            raise TypeError(f"audio_tokenizer must have a `decode` method, got {type(audio_tokenizer).__name__}")
        config = getattr(audio_tokenizer, "config", None)
        rate = getattr(config, "sampling_rate", None)
        if rate is not None and int(rate) != self.sampling_rate:
            raise ValueError(f"codec sampling rate {rate} differs from the processor's {self.sampling_rate}")
        quantizers = getattr(config, "num_quantizers", None)
        if quantizers is not None and int(quantizers) < self.n_vq:
            raise ValueError(f"the codec has {quantizers} quantizers, the model needs {self.n_vq}")
        self.audio_tokenizer = audio_tokenizer

    def to_dict(self) -> dict[str, Any]:
        codec = self.__dict__.pop("audio_tokenizer", None)
        try:
            output = super().to_dict()
        finally:
            self.audio_tokenizer = codec
        output.pop("audio_tokenizer", None)
        return output

    def save_pretrained(self, save_directory, push_to_hub: bool = False, save_audio_tokenizer: bool = True, **kwargs):
        """Save tokenizer and ``processor_config.json``; the codec goes to ``audio_tokenizer/``."""
        files = super().save_pretrained(save_directory, push_to_hub=push_to_hub, **kwargs)
        if save_audio_tokenizer and self.audio_tokenizer is not None:
            self.audio_tokenizer.save_pretrained(os.path.join(save_directory, AUDIO_TOKENIZER_SUBFOLDER))
        return files

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, audio_tokenizer=None, load_audio_tokenizer: bool = True, **kwargs):
        """Load the processor; the codec comes from ``audio_tokenizer/`` when present (or pass ``audio_tokenizer=``)."""
        processor = super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        if audio_tokenizer is None and load_audio_tokenizer:
            audio_tokenizer = cls._load_audio_tokenizer(pretrained_model_name_or_path, **kwargs)
        if audio_tokenizer is not None:
            processor.set_audio_tokenizer(audio_tokenizer)
        return processor

    @staticmethod
    def _load_audio_tokenizer(path, **kwargs):
        from transformers import AutoModel

        hub_kwargs = {
            k: kwargs[k]
            for k in ("cache_dir", "force_download", "token", "local_files_only", "revision", "device_map", "dtype",
                      "trust_remote_code")
            if k in kwargs
        }
        if os.path.isdir(path):
            folder = Path(path, kwargs.get("subfolder", ""), AUDIO_TOKENIZER_SUBFOLDER)
            if not (folder / "config.json").is_file():
                return None
            return AutoModel.from_pretrained(str(folder), **hub_kwargs).eval()
        subfolder = "/".join(p for p in (kwargs.get("subfolder", ""), AUDIO_TOKENIZER_SUBFOLDER) if p)
        try:
            return AutoModel.from_pretrained(path, subfolder=subfolder, **hub_kwargs).eval()
        except OSError:
            return None

    # ------------------------------------------------------------------ validation helpers
    @property
    def pad_token_id(self) -> int:
        """Text id of left-padding rows (the tokenizer's pad, else ``<|text_pad|>``)."""
        pad = self.tokenizer.pad_token_id
        return self.text_pad_token_id if pad is None else int(pad)

    @property
    def training_pad_token_id(self) -> int:
        """Text id of right-padding rows in training batches (the tokenizer's pad, else its eos)."""
        pad = self.tokenizer.pad_token_id
        return int(self.tokenizer.eos_token_id if pad is None else pad)

    def encode_text(self, text: str, name: str = "text") -> list[int]:
        """Token ids of ``text`` (no special tokens added); empty text is an error."""
        if not isinstance(text, str):
            raise TypeError(f"{name} must be a str, got {type(text).__name__}")
        ids = self._encode(text)
        if not ids:
            raise ValueError(f"{name} is empty: give some text to speak")
        return ids

    def _encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False)) if text else []

    def check_codes(self, codes, name: str = "codes") -> torch.Tensor:
        """Codes ``[T, >= n_vq]`` (tensor, array or nested lists) → LongTensor ``[T, n_vq]`` in ``[0, codebook_size)``.

        Extra codebooks (e.g. all 32 levels of the codec) are dropped: the model reads the first ``n_vq``.
        """
        if isinstance(codes, (np.ndarray, list, tuple)):
            try:
                codes = torch.as_tensor(np.asarray(codes))
            except (ValueError, TypeError) as err:
                raise ValueError(f"{name} must be a rectangular [T, {self.n_vq}] array of codes: {err}") from None
        if not isinstance(codes, torch.Tensor):
            raise TypeError(f"{name} must be a LongTensor [T, {self.n_vq}], got {type(codes).__name__}")
        if codes.dtype.is_floating_point or codes.dtype == torch.bool or codes.is_complex():
            raise TypeError(f"{name} must hold integer codes, got dtype {codes.dtype}")
        if codes.dim() != 2 or codes.shape[1] < self.n_vq or codes.shape[0] == 0:
            raise ValueError(
                f"{name} must have shape [T, {self.n_vq}] (frames first, T >= 1; wider is cut to the first {self.n_vq} "
                f"codebooks), got {tuple(codes.shape)}"
            )
        codes = codes[:, : self.n_vq].long().cpu()
        bad = (codes < 0) | (codes >= self.codebook_size)
        if bool(bad.any()):
            raise ValueError(f"{name} holds codes outside [0, {self.codebook_size}): {codes[bad][:8].tolist()}")
        return codes

    def _text_rows(self, ids: Sequence[int]) -> torch.Tensor:
        rows = torch.full((len(ids), 1 + self.n_vq), self.audio_pad_code, dtype=torch.long)
        if len(ids):
            rows[:, 0] = torch.as_tensor(list(ids), dtype=torch.long)
        return rows

    # ------------------------------------------------------------------ prompt rows
    def system_rows(self, voice_codes=None) -> torch.Tensor:
        """The system prompt (+ the voice context turn carrying ``voice_codes [T, 16]``): LongTensor [S, 17]."""
        if voice_codes is None:
            return self._text_rows(self._encode(SYSTEM_PROMPT))
        codes = self.check_codes(voice_codes, "voice_codes")
        text = SYSTEM_PROMPT + VOICE_CONTEXT_PREFIX + AUDIO_PLACEHOLDER * codes.shape[0] + TURN_END
        rows = self._text_rows(self._encode(text))
        slots = (rows[:, 0] == self.audio_placeholder_token_id).nonzero()[:, 0]
        first, last = int(slots[0]), int(slots[-1])
        if last - first + 1 != codes.shape[0]:  # pragma: no cover - the tokenizer splits the placeholder
            raise ValueError("the tokenizer does not encode <|audio_pad|> as one token per frame")
        rows[first : last + 1, 1:] = codes
        return rows

    def turn_rows(self, prefix: str, text_ids: Sequence[int], audio_codes) -> torch.Tensor:
        """One turn with speech (the original user/training layout): ``prefix`` rows, the text, ``<|text_pad|>`` rows;
        audio columns: BOS on the row ``min(L, 12) - 1`` after the prefix, the frames, then EOS in codebook 0."""
        codes = self.check_codes(audio_codes, "audio_codes")
        if len(text_ids) == 0:
            raise ValueError("a turn with audio needs non-empty text")
        lead = min(len(text_ids), self.text_lead)
        frames = codes.shape[0]
        length = max(len(text_ids), lead + frames + 1)
        body = self._text_rows(list(text_ids) + [self.text_pad_token_id] * (length - len(text_ids)))
        body[lead - 1, 1] = self.audio_bos_code
        body[lead : lead + frames, 1:] = codes
        body[lead + frames, 1] = self.audio_eos_code
        return torch.cat([self._text_rows(self._encode(prefix)), body])

    def assistant_header_rows(self) -> torch.Tensor:
        """Rows of ``"<|im_end|>\\n<|im_start|>assistant\\n"`` (a session's prompt ends with them)."""
        return self._text_rows(self._encode(TURN_END + _turn_start("assistant")))

    def user_turn_rows(self, user_text: str, user_audio_codes) -> torch.Tensor:
        """The streaming session's user turn (always with the leading ``<|im_end|>\\n``), then the assistant header."""
        ids = self.encode_text(user_text, "user_text")
        return torch.cat(
            [self.turn_rows(TURN_END + _turn_start("user"), ids, user_audio_codes), self.assistant_header_rows()]
        )

    def turn_prompt_rows(self, user_text: str | None = None, user_audio_codes=None) -> torch.Tensor:
        """Rows a session feeds before a reply's text: the user turn (text and codes together) or the header."""
        if (user_text is None) != (user_audio_codes is None):
            raise ValueError(
                "a user turn needs both user_text and user_audio_codes [T, 16] (as the original); pass both or neither"
            )
        if user_text is None:
            return self.assistant_header_rows()
        return self.user_turn_rows(user_text, user_audio_codes)

    def session_prompt_rows(self, voice_codes=None, user_text: str | None = None, user_audio_codes=None) -> torch.Tensor:
        """The first turn of a streaming session: system (+ voice) + user turn or assistant header: [S, 17]."""
        turn = self.turn_prompt_rows(user_text, user_audio_codes)
        return torch.cat([self.system_rows(voice_codes), turn])

    def inference_prompt_rows(self, voice_codes=None) -> torch.Tensor:
        """The non-streaming inferencer's prompt: system (+ voice) + ``<|im_start|>assistant\\n``: [S, 17]."""
        return torch.cat([self.system_rows(voice_codes), self._text_rows(self._encode(_turn_start("assistant")))])

    def left_pad_rows(self, items: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Left-pad row matrices [T_i, 17] into ``rows [B, T, 17]`` and ``attention_mask [B, T]`` (long)."""
        length = max(item.shape[0] for item in items)
        rows = torch.full((len(items), length, 1 + self.n_vq), self.audio_pad_code, dtype=torch.long)
        rows[..., 0] = self.pad_token_id
        mask = torch.zeros((len(items), length), dtype=torch.long)
        for b, item in enumerate(items):
            rows[b, length - item.shape[0] :] = item
            mask[b, length - item.shape[0] :] = 1
        return rows, mask

    # ------------------------------------------------------------------ training data
    def build_training_example(self, record: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """One record of the reference fine-tuning format → ``{"input_ids": [T, 17], "labels": [T, 17]}``.

        ``record = {"conversations": [{"role": "user" | "assistant", "text": str, "audio_codes": [T, 16]}, ...],
        "ref_audio_codes": [T, 16] | None}``. Layout: system (+ voice context from ``ref_audio_codes``), then every
        turn as :meth:`turn_rows` (first turn prefixed ``<|im_start|>{role}\\n``, later ones
        ``<|im_end|>\\n<|im_start|>{role}\\n``); a trailing user turn is dropped. Labels (-100 elsewhere): the frame rows
        of assistant turns (16 codebooks) and their EOS row (codebook 0 only).
        """
        if not isinstance(record, Mapping) or "conversations" not in record:
            raise ValueError('record must be a dict with "conversations" (and optionally "ref_audio_codes")')
        turns = list(record["conversations"])
        if not turns:
            raise ValueError("record['conversations'] is empty")
        while turns and turns[-1].get("role") == "user":
            turns.pop()  # a trailing user turn has nothing to learn from
        if not any(t.get("role") == "assistant" for t in turns):
            raise ValueError("record['conversations'] has no assistant turn (nothing to learn)")
        ref = record.get("ref_audio_codes")
        if ref is not None:
            ref = self._record_codes(ref, "ref_audio_codes", codec_layout_first=True)
        parts = [self.system_rows(ref)]
        labels = [torch.full_like(parts[0], IGNORE_INDEX)]
        for i, turn in enumerate(turns):
            role = turn.get("role")
            if role not in ("user", "assistant"):
                raise ValueError(f"conversations[{i}].role must be 'user' or 'assistant', got {role!r}")
            prefix = _turn_start(role) if i == 0 else TURN_END + _turn_start(role)
            text_ids = self.encode_text(turn.get("text"), f"conversations[{i}].text")
            codes = self._record_codes(turn.get("audio_codes"), f"conversations[{i}].audio_codes")
            rows = self.turn_rows(prefix, text_ids, codes)
            label = torch.full_like(rows, IGNORE_INDEX)
            if role == "assistant":
                audio = rows[:, 1:]
                frames = (audio[:, 0] < self.codebook_size) | (audio[:, 0] == self.audio_eos_code)
                label[frames, 1:] = audio[frames]
                label[..., 1:][label[..., 1:] == self.audio_pad_code] = IGNORE_INDEX  # EOS row: codebook 0 only
            parts.append(rows)
            labels.append(label)
        return {"input_ids": torch.cat(parts), "labels": torch.cat(labels)}

    def _record_codes(self, codes, name: str, codec_layout_first: bool = False) -> torch.Tensor:
        """Codes of a training record in either layout, ``[T, 16]`` or the codec's ``[16, T]``.

        As the reference dataset does for the voice prompt (``codec_layout_first``), a matrix with ``n_vq`` rows is
        read as ``[n_vq, T]`` (so a 16 x 16 prompt is transposed); otherwise ``[T, n_vq]`` is preferred.
        """
        if codes is None:
            raise ValueError(f"{name} is missing: every turn needs its audio codes [T, {self.n_vq}]")
        tensor = codes if isinstance(codes, torch.Tensor) else torch.as_tensor(np.asarray(codes))
        if tensor.dim() == 2:
            rows_are_codebooks = tensor.shape[0] == self.n_vq and (codec_layout_first or tensor.shape[1] != self.n_vq)
            if rows_are_codebooks:
                tensor = tensor.T
        return self.check_codes(tensor, name)

    def collate_training_examples(self, examples: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Right-pad examples into ``input_ids [B, T, 17]``, ``attention_mask [B, T]`` (bool), ``labels [B, T, 17]``
        (text pad = the tokenizer's pad or eos id, codes = pad, labels = -100)."""
        if not examples:
            raise ValueError("collate_training_examples needs at least one example")
        length = max(int(e["input_ids"].shape[0]) for e in examples)
        batch = len(examples)
        input_ids = torch.full((batch, length, 1 + self.n_vq), self.audio_pad_code, dtype=torch.long)
        input_ids[..., 0] = self.training_pad_token_id
        labels = torch.full((batch, length, 1 + self.n_vq), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((batch, length), dtype=torch.bool)
        for b, example in enumerate(examples):
            ids, lab = torch.as_tensor(example["input_ids"]), torch.as_tensor(example["labels"])
            if ids.shape != lab.shape or ids.dim() != 2 or ids.shape[1] != 1 + self.n_vq:
                raise ValueError(f"example {b}: input_ids and labels must both be [T, {1 + self.n_vq}]")
            input_ids[b, : ids.shape[0]] = ids
            labels[b, : ids.shape[0]] = lab
            mask[b, : ids.shape[0]] = True
        return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}

    # ------------------------------------------------------------------ audio out
    def _require_codec(self):
        if self.audio_tokenizer is None:
            raise ValueError(
                "no audio tokenizer attached: convert with --audio-tokenizer, or processor.set_audio_tokenizer(codec)"
            )
        return self.audio_tokenizer

    def playable_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames up to (not including) the first one with an id outside ``[0, codebook_size)`` (EOS, PAD, BOS can be
        sampled in any codebook; the original's streaming bridge stops there too)."""
        frames = torch.as_tensor(frames)
        if frames.dim() != 2 or frames.shape[1] < self.n_vq:
            raise ValueError(f"frames must have shape [T, {self.n_vq}], got {tuple(frames.shape)}")
        frames = frames[:, : self.n_vq]
        bad = ((frames < 0) | (frames >= self.codebook_size)).any(dim=1).nonzero()
        return frames[: int(bad[0, 0])] if len(bad) else frames

    @torch.no_grad()
    def decode_audio_codes(self, frames) -> torch.Tensor | list[torch.Tensor]:
        """Frames ``[T, 16]`` (or a list of them) → float32 CPU waveform(s) ``[T' * frame_size]`` (``T'`` frames up to
        the first non-code id, see :meth:`playable_frames`)."""
        if isinstance(frames, (list, tuple)):
            return [self.decode_audio_codes(f) for f in frames]
        codec = self._require_codec()
        frames = self.playable_frames(frames)
        if frames.shape[0] == 0:
            return torch.zeros(0, dtype=torch.float32)
        device = next(codec.parameters()).device
        audio = codec.decode(frames.T[None].to(device), return_dict=False)[0]
        return audio[0, 0].float().cpu()

    def stream_waveform(self, chunk_frames: int = 1) -> RealtimeWaveformStream:
        """A streaming decoder: feed it frames as a session produces them, get audio chunks (see
        :class:`RealtimeWaveformStream`)."""
        return RealtimeWaveformStream(self, chunk_frames=chunk_frames)

    def save_audio(self, audio, path: str | os.PathLike, sampling_rate: int | None = None) -> Path:
        from ..audio_io import save_audio

        return save_audio(audio, path, sampling_rate or self.sampling_rate)

    @property
    def model_input_names(self) -> list[str]:
        return ["input_ids", "attention_mask"]


class RealtimeWaveformStream:
    """Incremental decoding of frames through the codec's streaming state (its causal transformers keep their KV
    across chunks), so the chunks concatenate to the offline decode of the same frames (within the codec's attention
    window; see the audio tokenizer's streaming notes).

    ``push(frames [k, 16])`` returns the audio of every complete chunk of ``chunk_frames`` frames now available
    (float32 CPU, possibly empty); ``flush()`` decodes the rest. A frame holding a non-code id (EOS/PAD/BOS) ends
    the stream: it and everything after it are dropped.
    """

    def __init__(self, processor: CodecTTSRealtimeProcessor, chunk_frames: int = 1):
        if isinstance(chunk_frames, bool) or not isinstance(chunk_frames, int) or chunk_frames < 1:
            raise ValueError(f"chunk_frames must be a positive int, got {chunk_frames!r}")
        self.processor = processor
        self.codec = processor._require_codec()
        self.chunk_frames = chunk_frames
        self.state = None
        self.pending = torch.zeros((0, processor.n_vq), dtype=torch.long)
        self.stopped = False
        self.frames_decoded = 0

    def _decode(self, frames: torch.Tensor) -> torch.Tensor:
        device = next(self.codec.parameters()).device
        with torch.no_grad():
            # tuple output: (audio, lengths, streaming state)
            audio, _, self.state = self.codec.decode(
                frames.T[None].to(device), streaming_state=self.state, use_cache=True, return_dict=False
            )
        self.frames_decoded += frames.shape[0]
        return audio[0, 0].float().cpu()

    def push(self, frames) -> torch.Tensor:
        if self.stopped:
            return torch.zeros(0)
        frames = torch.as_tensor(frames)
        if frames.numel() == 0:
            return torch.zeros(0)
        playable = self.processor.playable_frames(frames)
        if playable.shape[0] < frames.shape[0]:
            self.stopped = True
        self.pending = torch.cat([self.pending, playable])
        whole = (self.pending.shape[0] // self.chunk_frames) * self.chunk_frames
        if whole == 0:
            return torch.zeros(0)
        todo, self.pending = self.pending[:whole], self.pending[whole:]
        return self._decode(todo)

    def flush(self) -> torch.Tensor:
        todo, self.pending = self.pending, self.pending[:0]
        if todo.shape[0] == 0:
            return torch.zeros(0)
        return self._decode(todo)

    def iter_chunks(self, frame_batches: Iterable[torch.Tensor]):
        """Yield audio chunks for an iterable of frame batches (e.g. a session's push results), then the rest."""
        for frames in frame_batches:
            audio = self.push(frames)
            if audio.numel():
                yield audio
        audio = self.flush()
        if audio.numel():
            yield audio
