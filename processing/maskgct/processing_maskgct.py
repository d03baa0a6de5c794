"""MaskGCT processor: text front-end (g2p + phone table), w2v-bert feature extractor and prompt-audio handling.

``processor(text=..., prompt_text=..., prompt_audio=..., language="en")`` returns everything
`MaskGctForTextToSpeech.generate` needs:

* ``phone_ids`` [1, Ph]: prompt-text phones followed by target-text phones; ``num_prompt_phones`` [1];
* ``input_features`` [1, T, 160] / ``attention_mask`` [1, T]: `SeamlessM4TFeatureExtractor` output of the 16 kHz
  prompt (semantic path); ``prompt_num_samples`` [1]: its length in samples (duration rule);
* ``prompt_audio_values`` [1, L]: the 24 kHz prompt (acoustic path).
"""

from __future__ import annotations

import json
import os
from importlib import resources

import numpy as np
import torch
from transformers import BatchFeature, SeamlessM4TFeatureExtractor
from transformers.processing_utils import ProcessorMixin

from ..audio_io import AudioInputError, load_audio_file, prepare_waveform, to_mono
from .g2p import MaskGctG2P


def _resample_hq(wav: np.ndarray, rate: int, target: int) -> np.ndarray:
    if rate <= 0:
        raise AudioInputError(f"prompt_audio: the sampling rate must be positive, got {rate}")
    if rate == target or wav.size == 0:
        return wav
    import soxr

    return soxr.resample(wav, rate, target, quality="HQ").astype(np.float32, copy=False)


def default_phone_vocab() -> dict[str, int]:
    """The official MaskGCT phone table (Amphion ``g2p/g2p/vocab.json``, MIT; 363 phones)."""
    text = resources.files(__package__).joinpath("phone_vocab.json").read_text(encoding="utf-8")
    return json.loads(text)["vocab"]


def default_feature_extractor() -> SeamlessM4TFeatureExtractor:
    """``SeamlessM4TFeatureExtractor`` with the facebook/w2v-bert-2.0 values."""
    return SeamlessM4TFeatureExtractor(
        feature_size=80,
        num_mel_bins=80,
        sampling_rate=16000,
        stride=2,
        padding_value=1.0,
        return_attention_mask=True,
        padding_side="right",
    )


class MaskGctProcessor(ProcessorMixin):
    r"""Processor of `MaskGctForTextToSpeech`.

    Args:
        feature_extractor: `SeamlessM4TFeatureExtractor` (w2v-bert-2.0 values).
        phone_vocab: phone -> id table (default: the official one).
        sampling_rate: output / acoustic-prompt rate (24000); the semantic path runs at the feature extractor's rate.
        language: default language of the texts.
    """

    attributes = ["feature_extractor"]

    def __init__(
        self,
        feature_extractor=None,
        phone_vocab: dict[str, int] | None = None,
        sampling_rate: int = 24000,
        language: str = "en",
        **kwargs,
    ):
        if feature_extractor is None:
            feature_extractor = default_feature_extractor()
        self.phone_vocab = dict(phone_vocab) if phone_vocab is not None else default_phone_vocab()
        self.sampling_rate = int(sampling_rate)
        self.language = language
        self._g2p = MaskGctG2P(self.phone_vocab)
        super().__init__(feature_extractor, **kwargs)

    @property
    def semantic_sampling_rate(self) -> int:
        return int(self.feature_extractor.sampling_rate)

    def phonemize(self, text: str, language: str | None = None) -> tuple[str, list[int]]:
        """Text -> (phone string, phone ids), exactly as the original front-end (``g2p_``)."""
        return self._g2p(text, language or self.language)

    def prepare_prompt_audio(self, prompt_audio) -> tuple[np.ndarray, np.ndarray]:
        """``(waveform, rate)`` (or a path) -> (16 kHz, 24 kHz) mono float32; a list
        ``[(wav_16k, 16000), (wav_24k, 24000)]`` is used as given (rates checked, no resampling)."""
        rates = (self.semantic_sampling_rate, self.sampling_rate)
        if isinstance(prompt_audio, list):
            if len(prompt_audio) != 2 or not all(isinstance(x, tuple) and len(x) == 2 for x in prompt_audio):
                raise ValueError("prompt_audio as a list must be [(wav_16k, 16000), (wav_24k, 24000)]")
            for (_, rate), expected, name in zip(prompt_audio, rates, ("first", "second")):
                if int(rate) != expected:
                    raise ValueError(
                        f"prompt_audio: the {name} waveform must be at {expected} Hz, got {rate} Hz "
                        "(or pass one (waveform, sampling_rate) pair to resample)"
                    )
            return tuple(prepare_waveform(item, rate, what="prompt_audio") for item, rate in zip(prompt_audio, rates))
        if isinstance(prompt_audio, (np.ndarray, torch.Tensor)):
            raise ValueError("prompt_audio must say its sampling rate: pass (waveform, sampling_rate)")
        if isinstance(prompt_audio, (str, os.PathLike)):
            prompt_audio = load_audio_file(prompt_audio)
        if not (isinstance(prompt_audio, tuple) and len(prompt_audio) == 2):
            raise ValueError(
                "prompt_audio must be (waveform, sampling_rate), a path, or [(wav_16k, 16000), (wav_24k, 24000)]"
            )
        wav, rate = to_mono(prompt_audio[0]), int(prompt_audio[1])
        # resampled like the original's librosa.load (soxr, "HQ" quality) for each path
        return tuple(
            prepare_waveform((_resample_hq(wav, rate, target), target), target, what="prompt_audio") for target in rates
        )

    def __call__(
        self,
        text=None,
        prompt_text: str | None = None,
        prompt_audio=None,
        language: str | None = None,
        target_language: str | None = None,
        return_tensors: str | None = "pt",
        **kwargs,
    ) -> BatchFeature:
        """Build generate() inputs for one utterance (see the module docstring).

        Args:
            text: the target text (a string, or a list of one string).
            prompt_text: transcript of the prompt audio.
            prompt_audio: ``(waveform, sampling_rate)``, a path, or ``[(wav_16k, 16000), (wav_24k, 24000)]``.
            language: language of the prompt text (default ``self.language``); target_language: of ``text``
                (default: ``language``).
        """
        if isinstance(text, (list, tuple)):
            if len(text) != 1:
                raise ValueError("MaskGCT processes one utterance per call: pass a single text")
            text = text[0]
        if not isinstance(text, str) or not text.strip():
            raise ValueError("text must be a non-empty string")
        if prompt_audio is None and prompt_text is None:
            # text only (e.g. from pipeline("text-to-speech")): the prompt comes later, as generate() kwargs
            return BatchFeature({"text": [text]})
        if prompt_audio is None or prompt_text is None:
            raise ValueError("MaskGCT clones a voice: pass both prompt_audio and its transcript prompt_text")
        language = language or self.language
        _, prompt_ids = self.phonemize(prompt_text, language)
        _, target_ids = self.phonemize(text, target_language or language)
        if not target_ids:
            raise ValueError(f"text {text!r} gives no phones")
        wav16, wav24 = self.prepare_prompt_audio(prompt_audio)
        features = self.feature_extractor(wav16, sampling_rate=self.semantic_sampling_rate, return_tensors="pt")
        data = {
            "phone_ids": torch.tensor([prompt_ids + target_ids], dtype=torch.long),
            "num_prompt_phones": torch.tensor([len(prompt_ids)], dtype=torch.long),
            "input_features": features["input_features"],
            "attention_mask": features["attention_mask"],
            "prompt_audio_values": torch.from_numpy(np.ascontiguousarray(wav24))[None],
            "prompt_num_samples": torch.tensor([wav16.shape[0]], dtype=torch.long),
        }
        return BatchFeature(data, tensor_type=return_tensors if return_tensors != "pt" else None)

    def decode(self, audio, **kwargs):
        """generate() output (or its ``audio``) -> waveform(s) as float32 numpy arrays."""
        if hasattr(audio, "audio"):
            audio = audio.audio
        return audio.detach().cpu().float().numpy()

    @property
    def model_input_names(self):
        return [
            "phone_ids",
            "num_prompt_phones",
            "input_features",
            "attention_mask",
            "prompt_audio_values",
            "prompt_num_samples",
        ]


__all__ = ["AudioInputError", "MaskGctProcessor", "default_feature_extractor", "default_phone_vocab"]
