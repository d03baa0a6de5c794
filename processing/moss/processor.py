"""``CodecTTSProcessor``: text tokenizer + audio tokenizer (codec) → prompt token matrices, and back to speech.

Prompts are ``input_ids [B, T, 1 + n_vq]`` (column 0 text, columns 1..n_vq RVQ codes) with a bool
``attention_mask [B, T]``, left padded — the input of the Delay and Local generators. One processor serves both
layouts (``layout="delay" | "local"``, from the model config).

Public API (see the method docstrings):

* ``build_user_message(text, reference, instruction, tokens, quality, sound_event, ambient_sound, language)``,
  ``build_assistant_message(audio_codes_list, content)`` → native message dicts;
* ``processor(conversations, mode="generation" | "continuation" | "computing_loss", n_vq=None)`` → ``BatchFeature``;
* ``processor.apply_chat_template(chat, ...)`` for transformers-style ``{"type": "text" | "audio"}`` content;
* ``processor.encode_audio(audios, sampling_rate=None, n_vq=None)`` → list of codes ``[frames, n_vq]``;
* ``processor.prepare_training_examples(records)`` / ``processor.training_collator()`` → fine-tuning rows + labels
  and their padding collator (``training.py``);
* ``processor.decode_generation(sequences, prompt_length=...)`` → :class:`GeneratedSpeech` per item (text with
  ``<|audio|>`` placeholders, one waveform and the codes per audio segment; one batched codec call);
  ``batch_decode`` / ``decode`` → waveforms only (transformers convention, used by the text-to-speech pipeline);
  ``processor.decode_audio_codes(list_of_codes)``;
* ``processor.save_audio(audio, path)`` (atomic).

The codec is saved in / loaded from the ``audio_tokenizer/`` subfolder of the processor folder.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import BatchFeature
from transformers.processing_utils import ProcessorMixin

from ..audio_io import AudioInputError, loudness_normalize, prepare_waveform
from ..audio_io import save_audio as _save_audio
from .decoding import GeneratedSpeech, parse_generation, render_text
from .messages import (
    USER_FIELDS,
    build_assistant_message,
    build_user_message,
    is_path_like,
    merge_adjacent_placeholders,
    messages_from_chat,
    normalize_message,
)
from .prompt import LAYOUTS, PromptFormat, expand_placeholders, left_pad, message_rows

MODES = ("generation", "continuation", "computing_loss")
AUDIO_TOKENIZER_SUBFOLDER = "audio_tokenizer"

# Token-id fields (names as in the model configs) and their MOSS-TTS defaults.
TOKEN_ID_DEFAULTS = {
    "pad_token_id": 151643,
    "im_start_token_id": 151644,
    "im_end_token_id": 151645,
    "audio_start_token_id": 151652,
    "audio_end_token_id": 151653,
    "audio_user_slot_token_id": 151654,
    "audio_assistant_gen_slot_token_id": 151656,
    "audio_assistant_delay_slot_token_id": 151662,
}


def _is_codes(item: Any) -> bool:
    return isinstance(item, torch.Tensor) and not item.is_floating_point() and item.dtype != torch.bool


class CodecTTSProcessor(ProcessorMixin):
    r"""Processor for codec-token TTS models (MOSS-TTS Delay / Local compatible).

    Args:
        tokenizer: the text tokenizer; its chat template wraps every message.
        audio_tokenizer: the codec model (``CodecTTSAudioTokenizerModel``: ``encode``/``decode``); optional for
            prompts made only of text and ready-made codes.
        chat_template: overrides the tokenizer's chat template.
        layout: ``"delay"`` (codebook ``j`` delayed by ``j`` rows) or ``"local"`` (one frame per row).
        n_vq: number of codebooks the generator uses.
        audio_pad_code: the "no code" value in audio columns (= codebook size).
        sampling_rate: waveform rate of the codec.
        normalize_text: run the robustness text normalisation on user text (default: on for Delay, off for Local,
            as the checkpoints were trained).
        loudness_target_dbfs, loudness_max_gain_db: reference-audio loudness normalisation (§6.4 of the spec).
        *_token_id: special token ids (from the model config).
    """

    tokenizer_class = "AutoTokenizer"

    def __init__(
        self,
        tokenizer=None,
        audio_tokenizer=None,
        chat_template: str | None = None,
        layout: str = "delay",
        n_vq: int = 32,
        audio_pad_code: int = 1024,
        sampling_rate: int = 24000,
        normalize_text: bool | None = None,
        loudness_target_dbfs: float = -20.0,
        loudness_max_gain_db: float = 3.0,
        pad_token_id: int = TOKEN_ID_DEFAULTS["pad_token_id"],
        im_start_token_id: int = TOKEN_ID_DEFAULTS["im_start_token_id"],
        im_end_token_id: int = TOKEN_ID_DEFAULTS["im_end_token_id"],
        audio_start_token_id: int = TOKEN_ID_DEFAULTS["audio_start_token_id"],
        audio_end_token_id: int = TOKEN_ID_DEFAULTS["audio_end_token_id"],
        audio_user_slot_token_id: int = TOKEN_ID_DEFAULTS["audio_user_slot_token_id"],
        audio_assistant_gen_slot_token_id: int = TOKEN_ID_DEFAULTS["audio_assistant_gen_slot_token_id"],
        audio_assistant_delay_slot_token_id: int = TOKEN_ID_DEFAULTS["audio_assistant_delay_slot_token_id"],
        **kwargs,
    ):
        if tokenizer is None:
            raise ValueError("CodecTTSProcessor needs a text tokenizer")
        if chat_template is None:
            chat_template = getattr(tokenizer, "chat_template", None)
        # The codec is not a ProcessorMixin "attribute": transformers' own audio-tokenizer handling checks the class
        # against a fixed list and stores an absolute path; we keep it in a subfolder instead (see save_pretrained).
        super().__init__(tokenizer, chat_template=chat_template, **kwargs)
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        self.layout = layout
        self.n_vq = int(n_vq)
        self.audio_pad_code = int(audio_pad_code)
        self.sampling_rate = int(sampling_rate)
        self.normalize_text = (layout == "delay") if normalize_text is None else bool(normalize_text)
        self.loudness_target_dbfs = float(loudness_target_dbfs)
        self.loudness_max_gain_db = float(loudness_max_gain_db)
        self.pad_token_id = int(pad_token_id)
        self.im_start_token_id = int(im_start_token_id)
        self.im_end_token_id = int(im_end_token_id)
        self.audio_start_token_id = int(audio_start_token_id)
        self.audio_end_token_id = int(audio_end_token_id)
        self.audio_user_slot_token_id = int(audio_user_slot_token_id)
        self.audio_assistant_gen_slot_token_id = int(audio_assistant_gen_slot_token_id)
        self.audio_assistant_delay_slot_token_id = int(audio_assistant_delay_slot_token_id)
        self.audio_tokenizer = None
        if audio_tokenizer is not None:
            self.set_audio_tokenizer(audio_tokenizer)
        self._check_special_tokens()

    # -----------------------------------------------------------------------------------------------------------------
    # construction / persistence
    # -----------------------------------------------------------------------------------------------------------------

    @classmethod
    def from_model_config(cls, model_config, tokenizer, audio_tokenizer=None, **kwargs) -> CodecTTSProcessor:
        """Build a processor whose layout, ``n_vq``, pad code, sampling rate and token ids follow a generator config
        (``codectts_delay`` / ``codectts_local``, or any config with the same field names)."""
        model_type = str(getattr(model_config, "model_type", ""))
        if "local" in model_type or getattr(model_config, "local_num_layers", None) is not None:
            layout = "local"
        elif "delay" in model_type:
            layout = "delay"
        else:
            raise ValueError(f"cannot tell the prompt layout of a model of type {model_type!r}")
        values = {"layout": layout}
        for name in ("n_vq", "audio_pad_code", "sampling_rate", *TOKEN_ID_DEFAULTS):
            value = getattr(model_config, name, None)
            if value is not None:
                values[name] = value
        values.update(kwargs)
        return cls(tokenizer=tokenizer, audio_tokenizer=audio_tokenizer, **values)

    def set_audio_tokenizer(self, audio_tokenizer) -> None:
        """Attach a codec; its sampling rate must match the processor's."""
        for name in ("encode", "decode"):
            if not callable(getattr(audio_tokenizer, name, None)):
                raise TypeError(f"audio_tokenizer must have an `{name}` method, got {type(audio_tokenizer).__name__}")
        rate = getattr(getattr(audio_tokenizer, "config", None), "sampling_rate", None)
        if rate is not None and int(rate) != self.sampling_rate:
            raise ValueError(f"codec sampling rate {rate} differs from the processor's {self.sampling_rate}")
        self.audio_tokenizer = audio_tokenizer

    def _check_special_tokens(self) -> None:
        vocab_size = len(self.tokenizer)
        for name in TOKEN_ID_DEFAULTS:
            token_id = getattr(self, name)
            if not 0 <= token_id < vocab_size:
                raise ValueError(f"{name}={token_id} is outside the tokenizer vocabulary ({vocab_size} tokens)")

    def to_dict(self) -> dict[str, Any]:
        # The codec is a model saved in its own subfolder: keep it out of the (deep-copied) JSON config.
        codec = self.__dict__.pop("audio_tokenizer", None)
        try:
            output = super().to_dict()
        finally:
            self.audio_tokenizer = codec
        output.pop("audio_tokenizer", None)
        return output

    def save_pretrained(self, save_directory, push_to_hub: bool = False, save_audio_tokenizer: bool = True, **kwargs):
        """Save tokenizer, chat template and ``processor_config.json``; the codec (if any) goes to
        ``save_directory/audio_tokenizer/`` unless ``save_audio_tokenizer=False``."""
        files = super().save_pretrained(save_directory, push_to_hub=push_to_hub, **kwargs)
        if save_audio_tokenizer and self.audio_tokenizer is not None:
            self.audio_tokenizer.save_pretrained(os.path.join(save_directory, AUDIO_TOKENIZER_SUBFOLDER))
        return files

    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path, audio_tokenizer=None, load_audio_tokenizer: bool = True, **kwargs
    ):
        """Load the processor; the codec comes from ``audio_tokenizer/`` (or pass ``audio_tokenizer=`` a model).

        With ``load_audio_tokenizer=False`` (or no such subfolder) the processor works for text and codes only.
        """
        processor = super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        if audio_tokenizer is None and load_audio_tokenizer:
            audio_tokenizer = cls._load_audio_tokenizer(pretrained_model_name_or_path, **kwargs)
        # Attached afterwards: kwargs of `from_pretrained` also reach the tokenizer (and would end up in its config).
        if audio_tokenizer is not None:
            processor.set_audio_tokenizer(audio_tokenizer)
        return processor

    @staticmethod
    def _load_audio_tokenizer(path, **kwargs):
        from transformers import AutoModel

        hub_kwargs = {
            k: kwargs[k]
            for k in (
                "cache_dir", "force_download", "token", "local_files_only", "revision", "device_map", "dtype",
                "trust_remote_code",  # an exported folder's codec is remote code too
            )
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

    # -----------------------------------------------------------------------------------------------------------------
    # messages
    # -----------------------------------------------------------------------------------------------------------------

    @property
    def prompt_format(self) -> PromptFormat:
        return PromptFormat(
            layout=self.layout,
            n_vq=self.n_vq,
            audio_pad_code=self.audio_pad_code,
            pad_token_id=self.pad_token_id,
            audio_start_token_id=self.audio_start_token_id,
            audio_end_token_id=self.audio_end_token_id,
            audio_user_slot_token_id=self.audio_user_slot_token_id,
            audio_assistant_gen_slot_token_id=self.audio_assistant_gen_slot_token_id,
            audio_assistant_delay_slot_token_id=self.audio_assistant_delay_slot_token_id,
        )

    def build_user_message(
        self,
        text: str | None = None,
        reference: Any = None,
        instruction: str | None = None,
        tokens: int | None = None,
        quality: str | None = None,
        sound_event: str | None = None,
        ambient_sound: str | None = None,
        language: str | None = None,
    ) -> dict:
        """User turn from the template fields (see :func:`codectts.processing.moss.messages.build_user_message`); the text
        is normalised when ``self.normalize_text`` (Delay)."""
        return build_user_message(
            text,
            reference,
            instruction,
            tokens,
            quality,
            sound_event,
            ambient_sound,
            language,
            normalize_text=self.normalize_text,
        )

    @staticmethod
    def build_assistant_message(audio_codes_list: Any, content: str = "<|audio|>") -> dict:
        """Assistant turn holding audio items (paths, waveforms or codes ``[frames, n_vq]``)."""
        return build_assistant_message(audio_codes_list, content)

    def _as_batch(self, conversations) -> list[list[dict]]:
        """One message, one conversation or a batch of conversations → batch of validated native messages."""
        if isinstance(conversations, Mapping):
            conversations = [[conversations]]
        elif isinstance(conversations, Sequence) and not isinstance(conversations, str):
            if len(conversations) == 0:
                raise ValueError("no conversation given")
            if all(isinstance(m, Mapping) for m in conversations):
                conversations = [conversations]
        else:
            raise TypeError(
                f"expected a message dict, a list of messages or a batch of them, got {type(conversations)}"
            )
        batch = []
        for conversation in conversations:
            if isinstance(conversation, Mapping) or not isinstance(conversation, Sequence) or not conversation:
                raise TypeError("every conversation must be a non-empty list of message dicts")
            batch.append([normalize_message(m, normalize_text=self.normalize_text) for m in conversation])
        return batch

    @staticmethod
    def _check_roles(conversation: list[dict], mode: str) -> None:
        roles = [m["role"] for m in conversation]
        expected = ["user" if i % 2 == 0 else "assistant" for i in range(len(roles))]
        if roles != expected:
            raise ValueError(f"messages must alternate user/assistant starting with user, got {roles}")
        if mode == "generation" and roles[-1] != "user":
            raise ValueError("mode='generation' needs a conversation ending with a user message")
        if mode in ("continuation", "computing_loss") and roles[-1] != "assistant":
            raise ValueError(f"mode={mode!r} needs a conversation ending with an assistant message")

    def _render_message(self, role: str, content: str, add_generation_prompt: bool) -> list[int]:
        if not self.chat_template:
            raise ValueError("the tokenizer has no chat template; pass chat_template= to the processor")
        text = self.tokenizer.apply_chat_template(
            [{"role": role, "content": content}],
            chat_template=self.chat_template,
            add_generation_prompt=add_generation_prompt,
            tokenize=False,
        )
        return self.tokenizer.encode(text, add_special_tokens=False)

    # -----------------------------------------------------------------------------------------------------------------
    # prompts
    # -----------------------------------------------------------------------------------------------------------------

    def __call__(
        self,
        conversations,
        mode: str = "generation",
        n_vq: int | None = None,
        processor_kwargs: dict | None = None,
        **kwargs,
    ) -> BatchFeature:
        """Build generator inputs.

        Args:
            conversations: a message, a conversation (list of messages) or a batch of conversations. Messages are
                native dicts (``build_user_message``/``build_assistant_message``; dicts of template fields are
                accepted too) or transformers-style chat messages with ``{"type": "text" | "audio"}`` parts.
            mode: ``"generation"`` (ends with a user turn; the assistant turn is opened), ``"continuation"`` (ends
                with an assistant audio prefix that the model continues), ``"computing_loss"`` (complete turns).
            n_vq: codebooks to use (default ``self.n_vq``); longer code tensors are cut to this RVQ prefix.
            processor_kwargs / other keyword arguments: when ``conversations`` is plain text (a string or a list of
                strings, one per batch item), user-template fields for every item: ``reference``, ``instruction``,
                ``tokens``, ``quality``, ``sound_event``, ``ambient_sound``, ``language`` (this is how the
                text-to-speech pipeline passes a reference voice: ``processor_kwargs={"reference": "voice.wav"}``).

        Returns:
            ``BatchFeature`` with ``input_ids`` ``[B, T, 1 + n_vq]`` int64 and ``attention_mask`` ``[B, T]`` bool,
            left padded.
        """
        for key in ("return_tensors", "padding", "truncation"):
            kwargs.pop(key, None)  # always PyTorch tensors, left padding, no truncation
        kwargs.update(processor_kwargs or {})
        n_vq = kwargs.pop("n_vq", n_vq)
        mode = kwargs.pop("mode", mode)
        if isinstance(conversations, str) or (
            isinstance(conversations, Sequence) and conversations and all(isinstance(c, str) for c in conversations)
        ):
            texts = [conversations] if isinstance(conversations, str) else list(conversations)
            unknown = set(kwargs) - set(USER_FIELDS)
            if unknown:
                raise TypeError(f"unexpected arguments {sorted(unknown)}; user fields are {USER_FIELDS[1:]}")
            conversations = [[self.build_user_message(text=text, **kwargs)] for text in texts]
            kwargs = {}
        if kwargs:
            raise TypeError(f"unexpected arguments {sorted(kwargs)}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        n_vq = self.n_vq if n_vq is None else int(n_vq)
        fmt = self.prompt_format
        batch = self._as_batch(conversations)
        for conversation in batch:
            self._check_roles(conversation, mode)
        codes_by_item = self._encode_items(batch, n_vq)

        token = self.tokenizer.convert_ids_to_tokens
        all_rows = []
        for b, conversation in enumerate(batch):
            rows = []
            for m, message in enumerate(conversation):
                last = m == len(conversation) - 1
                items = [codes_by_item[(b, m, i)] for i in range(len(message["audio_codes_list"]))]
                content, groups = merge_adjacent_placeholders(message["content"], items)
                codes = [torch.cat(group, dim=0) for group in groups]
                content = expand_placeholders(content, [c.shape[0] for c in codes], message["role"], fmt, n_vq, token)
                ids = self._render_message(
                    message["role"], content, add_generation_prompt=last and mode == "generation"
                )
                rows.append(message_rows(ids, codes, fmt, n_vq, truncate_last_audio=last and mode == "continuation"))
            if mode == "generation" and self.layout == "local":
                # Local checkpoints expect the assistant audio block to be opened by the prompt.
                start = torch.full((1, 1 + n_vq), self.audio_pad_code, dtype=torch.long)
                start[0, 0] = self.audio_start_token_id
                rows.append(start)
            all_rows.append(torch.cat(rows, dim=0))
        input_ids, attention_mask = left_pad(all_rows, fmt)
        return BatchFeature({"input_ids": input_ids, "attention_mask": attention_mask}, tensor_type=None)

    def _encode_items(self, batch: list[list[dict]], n_vq: int) -> dict[tuple[int, int, int], torch.Tensor]:
        """Codes ``[frames, n_vq]`` for every audio item; all non-code items go through ONE codec call."""
        codes: dict[tuple[int, int, int], torch.Tensor] = {}
        pending_keys, pending_items = [], []
        for b, conversation in enumerate(batch):
            for m, message in enumerate(conversation):
                for i, item in enumerate(message["audio_codes_list"]):
                    if item is None:
                        raise ValueError("audio_codes_list entries must not be None")
                    if _is_codes(item):
                        codes[(b, m, i)] = self._check_codes(item, n_vq)
                    elif isinstance(item, (torch.Tensor, np.ndarray, tuple)) or is_path_like(item):
                        pending_keys.append((b, m, i))
                        pending_items.append(item)
                    else:
                        raise TypeError(
                            "an audio item must be a path, a waveform (array/tensor or (array, sampling_rate)) or "
                            f"integer codes [frames, n_vq]; got {type(item).__name__}"
                        )
        if pending_items:
            for key, value in zip(pending_keys, self.encode_audio(pending_items, n_vq=n_vq)):
                codes[key] = value
        return codes

    def _check_codes(self, codes: torch.Tensor, n_vq: int) -> torch.Tensor:
        if codes.dim() != 2:
            raise ValueError(f"audio codes must be [frames, n_vq], got shape {tuple(codes.shape)}")
        if codes.shape[1] < n_vq:
            raise ValueError(f"audio codes have {codes.shape[1]} codebooks but {n_vq} are needed")
        codes = codes[:, :n_vq].detach().cpu().long()
        if codes.numel() and (codes.min() < 0 or codes.max() >= self.audio_pad_code):
            raise ValueError(
                f"audio codes must lie in [0, {self.audio_pad_code}); got values in [{int(codes.min())}, "
                f"{int(codes.max())}]"
            )
        return codes

    # -----------------------------------------------------------------------------------------------------------------
    # training data (codectts.processing.moss.training)
    # -----------------------------------------------------------------------------------------------------------------

    def prepare_training_examples(self, records, base_dir: str | os.PathLike | None = None) -> list[dict]:
        """Training records (``{"text", "audio" | "codes", "reference", "language", ...}``) -> ``input_ids`` /
        ``labels`` rows as the original fine-tuning code lays them out; all their audio is encoded in ONE codec call.
        See :mod:`codectts.processing.moss.training`."""
        from .training import prepare_training_examples

        return prepare_training_examples(self, records, base_dir=base_dir)

    def training_collator(self, **kwargs):
        """A :class:`~codectts.processing.moss.training.CodecTTSDataCollator` with this processor's pad ids."""
        from .training import CodecTTSDataCollator

        return CodecTTSDataCollator.from_processor(self, **kwargs)

    # -----------------------------------------------------------------------------------------------------------------
    # transformers-style chat
    # -----------------------------------------------------------------------------------------------------------------

    def apply_chat_template(
        self,
        conversation,
        chat_template: str | None = None,
        mode: str | None = None,
        tokenize: bool = True,
        n_vq: int | None = None,
        **kwargs,
    ):
        """Chat API: ``[{"role": "user", "content": [{"type": "text", "text": ...}, {"type": "audio", "path": ...}]}]``.

        User text parts are the text to speak and audio parts the reference voice(s); template fields can be extra
        message keys (``"language"``, ``"instruction"``, ``"tokens"``, ...). Assistant audio parts form a prefix for
        continuation. ``mode`` defaults to ``"generation"`` when the conversation ends with a user turn, else
        ``"continuation"``. With ``tokenize=False`` returns the rendered prompt text(s) (audio as ``<|audio|>``).
        """
        for key in ("return_dict", "return_tensors", "add_generation_prompt", "padding", "truncation"):
            kwargs.pop(key, None)
        processor_kwargs = dict(kwargs.pop("processor_kwargs", None) or {})
        n_vq = processor_kwargs.pop("n_vq", n_vq)
        mode = processor_kwargs.pop("mode", mode)
        if processor_kwargs:
            raise TypeError(
                f"unexpected processor_kwargs {sorted(processor_kwargs)} for chat input (use message keys)"
            )
        if kwargs:
            raise TypeError(f"unexpected arguments {sorted(kwargs)}")
        single = bool(conversation) and isinstance(conversation[0], Mapping)
        conversations = [conversation] if single else list(conversation)
        batch = [messages_from_chat(c, normalize_text=self.normalize_text) for c in conversations]
        if mode is None:
            mode = "generation" if batch[0][-1]["role"] == "user" else "continuation"
        if not tokenize:
            template = chat_template or self.chat_template
            texts = []
            for messages in batch:
                self._check_roles(messages, mode)
                texts.append(
                    "".join(
                        self.tokenizer.apply_chat_template(
                            [{"role": m["role"], "content": m["content"]}],
                            chat_template=template,
                            add_generation_prompt=(i == len(messages) - 1 and mode == "generation"),
                            tokenize=False,
                        )
                        for i, m in enumerate(messages)
                    )
                )
            return texts[0] if single else texts
        if chat_template is not None and chat_template != self.chat_template:
            raise ValueError(
                "a different chat_template can only be used with tokenize=False; set processor.chat_template"
            )
        return self(batch, mode=mode, n_vq=n_vq)

    # -----------------------------------------------------------------------------------------------------------------
    # audio
    # -----------------------------------------------------------------------------------------------------------------

    def _require_codec(self):
        if self.audio_tokenizer is None:
            raise ValueError(
                "this processor has no audio tokenizer (codec): load it with one (an `audio_tokenizer/` subfolder) "
                "or pass audio_tokenizer=..., or give audio as codes [frames, n_vq]"
            )
        return self.audio_tokenizer

    def _codec_device_dtype(self) -> tuple[torch.device, torch.dtype]:
        codec = self._require_codec()
        parameter = next(codec.parameters(), None)
        if parameter is None:
            return torch.device("cpu"), torch.float32
        return parameter.device, parameter.dtype

    def _frame_size(self) -> int:
        config = getattr(self._require_codec(), "config", None)
        for name in ("downsample_rate", "hop_length", "frame_size"):
            value = getattr(config, name, None)
            if value:
                return int(value)
        raise ValueError("cannot tell the codec's samples per frame from its config (expected downsample_rate)")

    def prepare_audio(self, item: Any, sampling_rate: int | None = None) -> torch.Tensor:
        """One reference/prefix audio item (path, ``(array, rate)``, or array/tensor at ``sampling_rate``, default
        the codec rate) → validated, mono, resampled, loudness-normalised float32 waveform ``[samples]``."""
        if sampling_rate is not None and not (isinstance(item, tuple) or is_path_like(item)):
            item = (item, int(sampling_rate))
        wav = prepare_waveform(item, self.sampling_rate, min_samples=self._frame_size())
        return loudness_normalize(torch.from_numpy(wav), self.loudness_target_dbfs, self.loudness_max_gain_db)

    @torch.no_grad()
    def encode_audio(
        self, audios: Sequence[Any], sampling_rate: int | None = None, n_vq: int | None = None
    ) -> list[torch.Tensor]:
        """Encode audio items with ONE batched codec call.

        Args:
            audios: paths, ``(array, rate)`` pairs, or arrays/tensors (``[samples]`` or ``[channels, samples]``) at
                ``sampling_rate`` (default: the codec rate). Any rate, channel count, float or integer PCM.
            n_vq: codebooks to return (default ``self.n_vq``).

        Returns:
            one int64 CPU tensor ``[frames, n_vq]`` per item.
        """
        if isinstance(audios, (str, os.PathLike, np.ndarray, torch.Tensor, tuple)):
            audios = [audios]
        if not audios:
            return []
        n_vq = self.n_vq if n_vq is None else int(n_vq)
        codec = self._require_codec()
        wavs = [self.prepare_audio(item, sampling_rate) for item in audios]
        device, dtype = self._codec_device_dtype()
        length = max(w.shape[0] for w in wavs)
        input_values = torch.zeros(len(wavs), 1, length, dtype=dtype, device=device)
        padding_mask = torch.zeros(len(wavs), length, dtype=torch.bool, device=device)
        for b, wav in enumerate(wavs):
            input_values[b, 0, : wav.shape[0]] = wav.to(device=device, dtype=dtype)
            padding_mask[b, : wav.shape[0]] = True
        output = codec.encode(input_values, padding_mask=padding_mask, num_quantizers=n_vq)
        codes = output.audio_codes
        if codes.shape[1] < n_vq:
            raise ValueError(f"the codec returned {codes.shape[1]} codebooks, {n_vq} requested")
        # Whole frames only: a trailing partial frame (< 80 ms of zero-padded audio) is dropped, as in the prompts
        # the checkpoints were trained with (the reference codec floors the frame count).
        frame_size = self._frame_size()
        return [codes[b, :n_vq, : w.shape[0] // frame_size].T.contiguous().cpu().long() for b, w in enumerate(wavs)]

    @torch.no_grad()
    def decode_audio_codes(self, audio_codes: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Decode code segments ``[frames, K]`` (any K ≤ codec quantizers) with ONE batched codec call.

        Returns one float32 CPU waveform ``[frames * frame_size]`` per segment (zero frames → empty tensor).
        """
        codec = self._require_codec()
        if not audio_codes:
            return []
        widths = {c.shape[1] for c in audio_codes}
        if len(widths) != 1:
            raise ValueError(f"all segments must have the same number of codebooks, got {sorted(widths)}")
        nonempty = [i for i, c in enumerate(audio_codes) if c.shape[0] > 0]
        waveforms = [torch.zeros(0, dtype=torch.float32) for _ in audio_codes]
        if not nonempty:
            return waveforms
        device, _ = self._codec_device_dtype()
        frames = max(audio_codes[i].shape[0] for i in nonempty)
        codes = torch.zeros(len(nonempty), widths.pop(), frames, dtype=torch.long, device=device)
        lengths = torch.zeros(len(nonempty), dtype=torch.long, device=device)
        for row, i in enumerate(nonempty):
            segment = audio_codes[i]
            codes[row, :, : segment.shape[0]] = segment.T.to(device)
            lengths[row] = segment.shape[0]
        output = codec.decode(codes, audio_codes_lengths=lengths)
        for row, i in enumerate(nonempty):
            waveforms[i] = output.audio_values[row, 0, : int(output.audio_values_lengths[row])].float().cpu()
        return waveforms

    def save_audio(self, audio, path: str | os.PathLike, sampling_rate: int | None = None) -> Path:
        """Write a waveform (tensor/array, or a :class:`GeneratedSpeech`: all segments) atomically."""
        if isinstance(audio, GeneratedSpeech):
            audio = audio.waveform
        return _save_audio(audio, path, sampling_rate or self.sampling_rate)

    # -----------------------------------------------------------------------------------------------------------------
    # decoding generated sequences
    # -----------------------------------------------------------------------------------------------------------------

    def _sequences_and_prompt_lengths(self, sequences, prompt_length, input_ids) -> list[tuple[torch.Tensor, int]]:
        if hasattr(sequences, "sequences") and not isinstance(sequences, torch.Tensor):
            sequences = sequences.sequences  # a GenerateOutput
        if isinstance(sequences, (list, tuple)) and sequences and isinstance(sequences[0], (list, tuple)):
            # Reference form: [(start_length, rows)] with rows starting at the assistant turn (Delay) or at the last
            # <|audio_start|> (Local, whose prompt part therefore includes that row).
            offset = 1 if self.layout == "local" else 0
            pairs = []
            for start_length, rows in sequences:
                pairs.append((torch.as_tensor(rows), int(start_length) + offset))
            return pairs
        if not isinstance(sequences, torch.Tensor):
            raise TypeError(f"expected generated sequences as a tensor [B, T, 1 + n_vq], got {type(sequences)}")
        if sequences.dim() == 2:
            sequences = sequences[None]
        if sequences.dim() != 3:
            raise ValueError(f"generated sequences must be [B, T, 1 + n_vq], got shape {tuple(sequences.shape)}")
        if prompt_length is None and input_ids is not None:
            prompt_length = input_ids.shape[-2] if input_ids.dim() == 3 else input_ids.shape[-1]
        if prompt_length is None:
            prompt_length = [self._infer_prompt_length(seq) for seq in sequences]
        if isinstance(prompt_length, int) or (isinstance(prompt_length, torch.Tensor) and prompt_length.dim() == 0):
            prompt_length = [int(prompt_length)] * sequences.shape[0]
        if len(prompt_length) != sequences.shape[0]:
            raise ValueError(f"{len(prompt_length)} prompt lengths for {sequences.shape[0]} sequences")
        return [(sequences[b], int(prompt_length[b])) for b in range(sequences.shape[0])]

    def _assistant_header_ids(self) -> list[int]:
        """Token ids the chat template appends to open the assistant turn (``<|im_start|>assistant\n``)."""
        without = self._render_message("user", "x", add_generation_prompt=False)
        with_header = self._render_message("user", "x", add_generation_prompt=True)
        if with_header[: len(without)] != without or len(with_header) == len(without):
            raise ValueError("cannot find the assistant header of the chat template; pass prompt_length=")
        return with_header[len(without) :]

    def _infer_prompt_length(self, sequence: torch.Tensor) -> int:
        header = torch.tensor(self._assistant_header_ids())
        text = sequence[:, 0].cpu()
        windows = text.unfold(0, len(header), 1) if text.shape[0] >= len(header) else text[:0, None]
        hits = (windows == header).all(dim=1).nonzero().flatten()
        if hits.numel() == 0:
            raise ValueError("no assistant header in the sequence; pass prompt_length= (or input_ids=, the prompt)")
        length = int(hits[-1]) + len(header)
        if self.layout == "local" and length < text.shape[0] and int(text[length]) == self.audio_start_token_id:
            length += 1  # Local generation prompts end with the opened audio block
        return length

    def decode_generation(
        self,
        sequences,
        prompt_length: int | Sequence[int] | None = None,
        *,
        input_ids: torch.Tensor | None = None,
        include_end_frame: bool = False,
        num_quantizers: int | None = None,
        decode_audio: bool = True,
    ) -> list[GeneratedSpeech]:
        """Generated sequences → :class:`GeneratedSpeech` (text, one waveform and the codes per audio segment).

        Args:
            sequences: ``[B, T, 1 + n_vq]`` (prompt + generated rows, e.g. ``generate(...).sequences``) or a
                ``GenerateOutput``, or the reference list form ``[(start_length, rows), ...]``.
            prompt_length: rows of (padded) prompt at the start of ``sequences`` (or give ``input_ids``, the
                prompt). When neither is given, the prompt is taken to end after the last assistant header
                (``<|im_start|>assistant\n`` of the chat template, plus the opened audio block for Local): exact for
                generation prompts; a continuation prefix is then returned as generated audio.
            include_end_frame: Local: also decode the codes of the ``<|audio_end|>`` row (reference behaviour).
            num_quantizers: decode only the first K codebooks (default: those holding codes; Local
                ``n_vq_for_inference=K`` leaves the others as pad).
            decode_audio: ``False`` returns codes only (no codec needed; ``audio`` is empty).

        All segments of all items are decoded in ONE codec call; continuation prefixes are cut exactly.
        """
        fmt = self.prompt_format
        parsed = [
            parse_generation(
                seq,
                plen,
                fmt,
                stop_ids=(self.im_end_token_id,),
                trailing_ids=(self.pad_token_id,),
                include_end_frame=include_end_frame,
                num_quantizers=num_quantizers,
            )
            for seq, plen in self._sequences_and_prompt_lengths(sequences, prompt_length, input_ids)
        ]
        segments = [s for p in parsed for s in p.segments]
        waveforms = self.decode_audio_codes(segments) if decode_audio and segments else [None] * len(segments)
        frame_size = self._frame_size() if decode_audio and segments else 0
        results, k = [], 0
        for p in parsed:
            audio, codes = [], []
            for segment, prefix in zip(p.segments, p.prefix_frames):
                codes.append(segment[prefix:])
                if decode_audio:
                    audio.append(waveforms[k][prefix * frame_size :])
                k += 1
            text = render_text(p.text_ids, fmt, self.tokenizer.decode)
            results.append(
                GeneratedSpeech(text=text, audio=audio, audio_codes=codes, sampling_rate=self.sampling_rate)
            )
        return results

    def batch_decode(
        self, sequences, prompt_length: int | Sequence[int] | None = None, **kwargs
    ) -> list[torch.Tensor]:
        """Generated sequences → one float32 waveform ``[samples]`` per item (its audio segments concatenated).

        Same arguments as :meth:`decode_generation`, which also returns the text and the per-segment audio/codes.
        """
        return [item.waveform for item in self.decode_generation(sequences, prompt_length, **kwargs)]

    def decode(self, sequences, prompt_length: int | None = None, **kwargs):
        """:meth:`batch_decode` that returns a single waveform ``[samples]`` for one sequence (``[T, 1 + n_vq]``,
        ``[1, T, 1 + n_vq]`` or one ``(start_length, rows)`` pair), else the list."""
        if isinstance(sequences, tuple) and len(sequences) == 2 and not isinstance(sequences[0], torch.Tensor):
            sequences = [sequences]
        waveforms = self.batch_decode(sequences, prompt_length, **kwargs)
        return waveforms[0] if len(waveforms) == 1 else waveforms

    @property
    def model_input_names(self) -> list[str]:
        return ["input_ids", "attention_mask"]


__all__ = ["AudioInputError", "CodecTTSProcessor", "GeneratedSpeech"]
