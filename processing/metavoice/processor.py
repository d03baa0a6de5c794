"""``MetaVoiceProcessor``: text -> first-stage prompts (normalisation + BPE, left padding), reference audio ->
speaker-encoder features, and the token-stream adapters.

Public API:

* ``processor(text=[...], reference_audio=[(waveform, sampling_rate), ...])`` -> ``BatchFeature`` with
  ``input_ids [B, T]`` / ``attention_mask [B, T]`` (left padding) and ``speaker_features [B, P, 160, 40]`` /
  ``speaker_features_mask [B, P]``;
* ``processor.normalize_text(text)``; ``processor.tokenizer.encode(text)`` (first-stage ids, offset 2049, no
  normalisation);
* ``processor.speaker_features(reference)`` -> ``[P, 160, 40]``;
* ``processor.deinterleave_first_stage(tokens)``, ``processor.split_second_stage_rows(rows)`` (original adapters);
* ``processor.decode(output)`` / ``batch_decode`` -> waveforms (needs the model's bundled codec output).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import BatchFeature
from transformers.processing_utils import ProcessorMixin

from .adapters import deinterleave_first_stage, split_second_stage_rows
from .speaker_features import SpeakerFeatureSettings, load_reference, reference_partials
from .text import MetaVoiceTokenizer, normalize_text

__all__ = ["MetaVoiceProcessor"]

PROCESSOR_CONFIG = "processor_config.json"


class MetaVoiceProcessor(ProcessorMixin):
    r"""Processor of [`MetaVoiceForTextToSpeech`].

    A `ProcessorMixin` for transformers' pipelines, with its own (small) persistence: the tokenizer is not a
    transformers tokenizer, so the mixin's attribute machinery is not used.

    Args:
        tokenizer (`MetaVoiceTokenizer`): the BPE with the first-stage offset.
        speaker_settings (`SpeakerFeatureSettings`, *optional*): the speaker-encoder front-end.
        codebook_size (`int`, defaults to 1024): EnCodec codebook size (token layout of the adapters).
        context_length (`int`, *optional*): the first stage's context; longer prompts are rejected.
        sampling_rate (`int`, defaults to 24000): rate of the generated audio.
        normalize (`bool`, defaults to `True`): apply `normalize_text` in `__call__`.
    """

    attributes: list[str] = []
    model_input_names = ["input_ids", "attention_mask", "speaker_features", "speaker_features_mask"]

    def __init__(
        self,
        tokenizer: MetaVoiceTokenizer,
        speaker_settings: SpeakerFeatureSettings | None = None,
        codebook_size: int = 1024,
        context_length: int | None = None,
        sampling_rate: int = 24000,
        normalize: bool = True,
    ):
        # ProcessorMixin.__init__ is not called: it validates tokenizer/feature-extractor attributes we do not have
        self.chat_template = None
        if not isinstance(tokenizer, MetaVoiceTokenizer):
            raise TypeError(f"tokenizer must be a MetaVoiceTokenizer, got {type(tokenizer).__name__}")
        self.tokenizer = tokenizer
        self.speaker_settings = speaker_settings or SpeakerFeatureSettings()
        self.codebook_size = int(codebook_size)
        self.context_length = None if context_length is None else int(context_length)
        self.sampling_rate = int(sampling_rate)
        self.normalize = bool(normalize)

    # -- construction / persistence ----------------------------------------------------------------------------------

    @classmethod
    def from_model_config(cls, config, tokenizer: MetaVoiceTokenizer, **kwargs) -> MetaVoiceProcessor:
        fs = config.first_stage_config
        return cls(
            tokenizer.with_offset(fs.text_offset),
            SpeakerFeatureSettings.from_config(config.speaker_encoder_config),
            codebook_size=fs.codebook_size,
            context_length=fs.max_position_embeddings,
            sampling_rate=config.sampling_rate,
            **kwargs,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "processor_class": type(self).__name__,
            "speaker_settings": dict(self.speaker_settings.__dict__),
            "codebook_size": self.codebook_size,
            "context_length": self.context_length,
            "sampling_rate": self.sampling_rate,
            "normalize": self.normalize,
        }

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs) -> list[str]:
        folder = Path(save_directory)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / PROCESSOR_CONFIG).write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return [str(folder / PROCESSOR_CONFIG), *self.tokenizer.save_pretrained(folder)]

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs) -> MetaVoiceProcessor:
        folder = Path(pretrained_model_name_or_path)
        if not folder.is_dir():
            from huggingface_hub import snapshot_download

            hub = {k: kwargs[k] for k in ("revision", "token", "cache_dir", "local_files_only") if k in kwargs}
            folder = Path(snapshot_download(str(pretrained_model_name_or_path), **hub))
        if kwargs.get("subfolder"):
            folder = folder / kwargs["subfolder"]
        data = json.loads((folder / PROCESSOR_CONFIG).read_text())
        data.pop("processor_class", None)
        settings = SpeakerFeatureSettings(**data.pop("speaker_settings", {}))
        return cls(MetaVoiceTokenizer.from_pretrained(folder), settings, **data)

    def __repr__(self) -> str:
        return f"MetaVoiceProcessor(tokenizer={self.tokenizer!r}, sampling_rate={self.sampling_rate})"

    # -- text ----------------------------------------------------------------------------------------------------------

    @staticmethod
    def normalize_text(text: str) -> str:
        """The original `normalize_text` (Latin-1 only: other characters raise `ValueError`)."""
        return normalize_text(text)

    def encode_text(self, text: str) -> list[int]:
        """Normalised (if enabled) and tokenised first-stage prompt ids (+ end-of-text)."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str or a list of str, got {type(text).__name__}")
        if self.normalize:
            text = normalize_text(text)
        if not text.strip():
            raise ValueError("text is empty: give at least one character to speak")
        ids = self.tokenizer.encode(text)
        if self.context_length is not None and len(ids) >= self.context_length:
            raise ValueError(
                f"text is {len(ids)} tokens long but the first stage's context is {self.context_length} tokens "
                "(prompt + audio); split it into shorter sentences"
            )
        return ids

    # -- reference audio -----------------------------------------------------------------------------------------------

    def load_reference(self, reference: Any) -> np.ndarray:
        """A path or a ``(waveform, sampling_rate)`` pair -> mono float32 at the speaker encoder's rate."""
        return load_reference(reference, self.speaker_settings.sampling_rate)

    def speaker_features(self, reference: Any, trim: bool = True) -> torch.Tensor:
        """``[P, partials_n_frames, n_mels]`` mel partials of one reference (path or ``(waveform, rate)``)."""
        return reference_partials(reference, self.speaker_settings, trim=trim)

    # -- batching ------------------------------------------------------------------------------------------------------

    def __call__(
        self,
        text: str | Sequence[str] | None = None,
        reference_audio: Any = None,
        return_tensors: str | None = "pt",
        **kwargs,
    ) -> BatchFeature:
        """Texts (and optional reference voices) -> model inputs; see the module docstring.

        ``processor_kwargs={"reference_audio": ...}`` (how transformers' text-to-speech pipeline forwards processor
        arguments) is accepted too."""
        extra = dict(kwargs.pop("processor_kwargs", None) or {})
        if reference_audio is None:
            reference_audio = extra.pop("reference_audio", None)
        if text is None:
            raise ValueError("text is required")
        texts = [text] if isinstance(text, str) else list(text)
        if not texts:
            raise ValueError("text is an empty list")
        ids = [self.encode_text(t) for t in texts]
        longest = max(len(i) for i in ids)
        pad = 2 * self.codebook_size  # end-of-audio; masked anyway
        input_ids = torch.tensor([[pad] * (longest - len(i)) + i for i in ids], dtype=torch.long)
        attention_mask = torch.tensor([[0] * (longest - len(i)) + [1] * len(i) for i in ids], dtype=torch.long)
        data = {"input_ids": input_ids, "attention_mask": attention_mask}
        if reference_audio is not None:
            refs = self._references(reference_audio, len(texts))
            partials = [self.speaker_features(r) for r in refs]
            count = max(p.shape[0] for p in partials)
            features = torch.zeros((len(refs), count, *partials[0].shape[1:]), dtype=torch.float32)
            mask = torch.zeros((len(refs), count), dtype=torch.long)
            for b, p in enumerate(partials):
                features[b, : p.shape[0]] = p
                mask[b, : p.shape[0]] = 1
            data.update(speaker_features=features, speaker_features_mask=mask)
        return BatchFeature(data, tensor_type=return_tensors)

    @staticmethod
    def _references(reference_audio: Any, batch: int) -> list:
        single = isinstance(reference_audio, (str, os.PathLike)) or (
            isinstance(reference_audio, tuple) and len(reference_audio) == 2 and np.isscalar(reference_audio[1])
        )
        refs = [reference_audio] if single else list(reference_audio)
        if len(refs) == 1 and batch > 1:
            refs = refs * batch  # one voice for every text
        if len(refs) != batch:
            raise ValueError(f"got {len(refs)} reference_audio items for {batch} texts (give one, or one per text)")
        return refs

    # -- adapters ------------------------------------------------------------------------------------------------------

    def deinterleave_first_stage(self, tokens: Sequence[int]) -> tuple[list[int], list[list[int]]]:
        """The original ``FlattenedInterleavedEncodec2Codebook`` adapter (see `adapters`)."""
        return deinterleave_first_stage(tokens, self.codebook_size)

    def split_second_stage_rows(self, rows: Sequence[Sequence[int]]) -> tuple[list[int], list[list[int]]]:
        """The original ``TiltedEncodec`` adapter (see `adapters`)."""
        return split_second_stage_rows(rows, self.codebook_size)

    # -- output --------------------------------------------------------------------------------------------------------

    def batch_decode(self, outputs, **kwargs) -> list[torch.Tensor]:
        """Generation output (with ``.audio``) or a list of waveforms -> list of float32 waveforms."""
        audio = outputs.get("audio") if isinstance(outputs, dict) else outputs
        if audio is None or (isinstance(audio, torch.Tensor) and not audio.is_floating_point()):
            raise ValueError(
                "no waveform to decode: this MetaVoice folder has no bundled codec. Convert it with "
                "`codectts convert SRC DST --codec ENCODEC_DIR`, or decode `.audio_codes` with an EnCodec 24 kHz model"
            )
        return [a.float() for a in audio]

    def decode(self, outputs, **kwargs):
        waveforms = self.batch_decode(outputs, **kwargs)
        return waveforms[0] if len(waveforms) == 1 else waveforms
