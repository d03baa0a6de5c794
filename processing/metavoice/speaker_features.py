"""Speaker-encoder front-end of MetaVoice without librosa: the same mel power spectrogram (Slaney mel filterbank,
periodic Hann window, centred frames with zero padding, power 2, no log), the same silence trimming
(``librosa.effects.trim(top_db=20)``) and the same 1.6 s partial slices (rate 1.3, minimum coverage 0.75).

Everything is computed in float64 with numpy and returned as float32 (librosa works in float32; the two agree to
float32 rounding).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from ..audio_io import AudioInputError, load_audio_file, to_mono

__all__ = [
    "SpeakerFeatureSettings",
    "load_reference",
    "mel_filterbank",
    "mel_power_spectrogram",
    "partial_slices",
    "reference_partials",
    "speaker_partials",
    "trim_silence",
]


class SpeakerFeatureSettings:
    """The front-end constants (from a `MetaVoiceSpeakerEncoderConfig` or defaults = the release)."""

    def __init__(
        self,
        sampling_rate: int = 16000,
        n_fft: int = 400,
        hop_length: int = 160,
        mel_n_channels: int = 40,
        partials_n_frames: int = 160,
        partial_rate: float = 1.3,
        min_coverage: float = 0.75,
        trim_top_db: float = 20.0,
    ):
        self.sampling_rate = int(sampling_rate)
        self.n_fft = int(n_fft)
        self.hop_length = int(hop_length)
        self.mel_n_channels = int(mel_n_channels)
        self.partials_n_frames = int(partials_n_frames)
        self.partial_rate = float(partial_rate)
        self.min_coverage = float(min_coverage)
        self.trim_top_db = float(trim_top_db)

    @classmethod
    def from_config(cls, config) -> SpeakerFeatureSettings:
        return cls(**{k: getattr(config, k) for k in cls().__dict__})


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    # Slaney: linear below 1 kHz (200/3 Hz per mel), logarithmic above
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    hz = np.asarray(hz, dtype=np.float64)
    mel = hz / f_sp
    return np.where(hz >= min_log_hz, min_log_mel + np.log(np.maximum(hz, 1e-10) / min_log_hz) / logstep, mel)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    mel = np.asarray(mel, dtype=np.float64)
    return np.where(mel >= min_log_mel, min_log_hz * np.exp(logstep * (mel - min_log_mel)), f_sp * mel)


@lru_cache(maxsize=8)
def mel_filterbank(sampling_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    """Slaney-scale, Slaney-normalised triangular filters ``[n_mels, n_fft // 2 + 1]`` from 0 Hz to Nyquist,
    rounded to float32 like librosa's ``filters.mel``."""
    fft_freqs = np.fft.rfftfreq(n_fft, d=1.0 / sampling_rate)
    mel_freqs = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(sampling_rate / 2.0), n_mels + 2))
    widths = np.diff(mel_freqs)
    ramps = mel_freqs[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_freqs[2:] - mel_freqs[:-2]))[:, None]
    return weights.astype(np.float32)


def _frames(wav: np.ndarray, frame_length: int, hop_length: int) -> np.ndarray:
    count = 1 + (wav.shape[0] - frame_length) // hop_length
    return np.lib.stride_tricks.as_strided(
        wav, shape=(count, frame_length), strides=(wav.strides[0] * hop_length, wav.strides[0])
    )


def mel_power_spectrogram(wav: np.ndarray, settings: SpeakerFeatureSettings | None = None) -> np.ndarray:
    """``[frames, n_mels]`` mel power of a 16 kHz mono waveform; ``frames = 1 + len(wav) // hop``."""
    s = settings or SpeakerFeatureSettings()
    wav = np.asarray(wav, dtype=np.float64)
    padded = np.pad(wav, (s.n_fft // 2, s.n_fft // 2))
    if padded.shape[0] < s.n_fft:
        raise AudioInputError(f"the reference is too short for one {s.n_fft}-sample analysis frame")
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(s.n_fft) / s.n_fft)  # periodic Hann
    spectrum = np.fft.rfft(_frames(padded, s.n_fft, s.hop_length) * window, axis=-1)
    power = (spectrum.real**2 + spectrum.imag**2).astype(np.float32).astype(np.float64)
    filters = mel_filterbank(s.sampling_rate, s.n_fft, s.mel_n_channels).astype(np.float64)
    return (power @ filters.T).astype(np.float32)


def trim_silence(wav: np.ndarray, top_db: float = 20.0, frame_length: int = 2048, hop_length: int = 512) -> np.ndarray:
    """Drop leading/trailing frames quieter than ``top_db`` below the loudest frame (``librosa.effects.trim``:
    centred RMS frames with zero padding, frame-granular cut)."""
    wav = np.asarray(wav, dtype=np.float32)
    padded = np.pad(wav.astype(np.float64), (frame_length // 2, frame_length // 2))
    if padded.shape[0] < frame_length:
        return wav[:0]
    frames = _frames(padded, frame_length, hop_length)
    power = np.mean(frames**2, axis=-1)
    db = 10.0 * np.log10(np.maximum(1e-10, power)) - 10.0 * np.log10(np.maximum(1e-10, power.max()))
    loud = np.flatnonzero(db > -top_db)
    if loud.size == 0:
        return wav[:0]
    start = int(loud[0]) * hop_length
    end = min(wav.shape[0], (int(loud[-1]) + 1) * hop_length)
    return wav[start:end]


def partial_slices(n_samples: int, settings: SpeakerFeatureSettings | None = None) -> list[tuple[int, int]]:
    """Mel-frame ranges ``[(start, stop)]`` of the partial utterances (the original's ``compute_partial_slices``)."""
    s = settings or SpeakerFeatureSettings()
    n_frames = int(math.ceil((n_samples + 1) / s.hop_length))
    step = max(int(round((s.sampling_rate / s.partial_rate) / s.hop_length)), 1)
    stop = max(1, n_frames - s.partials_n_frames + step + 1)
    slices = [(i, i + s.partials_n_frames) for i in range(0, stop, step)]
    coverage = (n_samples - slices[-1][0] * s.hop_length) / (s.partials_n_frames * s.hop_length)
    if coverage < s.min_coverage and len(slices) > 1:
        slices = slices[:-1]
    return slices


def speaker_partials(wav: np.ndarray, settings: SpeakerFeatureSettings | None = None, trim: bool = True) -> np.ndarray:
    """``[P, partials_n_frames, n_mels]`` float32 mel partials of a 16 kHz mono waveform (optionally trimmed,
    zero-padded to the last partial's end) — the input of the speaker encoder."""
    s = settings or SpeakerFeatureSettings()
    wav = np.asarray(wav, dtype=np.float32)
    if trim:
        wav = trim_silence(wav, s.trim_top_db)
    if wav.shape[0] == 0:
        raise AudioInputError("the reference audio is silent (nothing left after trimming): a voice needs sound")
    slices = partial_slices(wav.shape[0], s)
    needed = slices[-1][1] * s.hop_length
    if needed >= wav.shape[0]:
        wav = np.pad(wav, (0, needed - wav.shape[0]))
    mel = mel_power_spectrogram(wav, s)
    return np.stack([mel[a:b] for a, b in slices])


def _resample_like_librosa(wav: np.ndarray, rate: int, target: int) -> np.ndarray:
    """``librosa.load(..., sr=target)``'s default resampler (soxr HQ) and its length fix (``ceil(n·ratio)``)."""
    if rate == target:
        return wav
    import soxr

    out = soxr.resample(wav, rate, target, quality="HQ").astype(np.float32, copy=False)
    size = int(math.ceil(wav.shape[0] * target / rate))
    if out.shape[0] < size:
        out = np.pad(out, (0, size - out.shape[0]))
    return out[:size]


def load_reference(reference, target_rate: int) -> np.ndarray:
    """A path or a ``(waveform, sampling_rate)`` pair -> mono float32 at ``target_rate``.

    Raises:
        ValueError: not a path/pair, or a sampling rate that is not an integer >= 1000 Hz.
        AudioInputError: empty audio or NaN/inf samples.
    """
    import os

    import torch

    if isinstance(reference, (str, os.PathLike)):
        data, rate = load_audio_file(reference)
    elif isinstance(reference, tuple) and len(reference) == 2:
        data, rate = reference
    else:
        raise ValueError(
            "reference_audio items must be (waveform, sampling_rate) pairs or audio file paths, got "
            f"{type(reference).__name__}"
        )
    if isinstance(rate, torch.Tensor) and rate.numel() == 1:
        rate = rate.item()
    if (
        isinstance(rate, bool)
        or not isinstance(rate, (int, np.integer, float, np.floating))
        or rate != int(rate)
        or rate < 1000
    ):
        raise ValueError(f"reference sampling_rate must be an integer number of Hz (>= 1000), got {rate!r}")
    wav = to_mono(data)
    if wav.ndim != 1 or wav.size == 0:
        raise AudioInputError("reference_audio is empty")
    if not np.isfinite(wav).all():
        raise AudioInputError("reference_audio contains NaN or infinite samples")
    return _resample_like_librosa(wav, int(rate), target_rate)


def reference_partials(reference, settings: SpeakerFeatureSettings | None = None, trim: bool = True):
    """One reference (path or ``(waveform, rate)``) -> ``torch.FloatTensor [P, partials_n_frames, n_mels]``:
    resampled to 16 kHz like ``librosa.load``, silence trimmed, zero-padded, mel partials.

    Raises:
        AudioInputError: less than one analysis window (``n_fft`` samples) of sound after trimming.
    """
    import torch

    s = settings or SpeakerFeatureSettings()
    wav = load_reference(reference, s.sampling_rate)
    if float(np.abs(wav).max()) < 1e-5:
        raise AudioInputError("reference_audio is silent (peak below 1e-5): a reference voice needs sound")
    if trim:
        wav = trim_silence(wav, s.trim_top_db)
    if wav.shape[0] < s.n_fft:
        raise AudioInputError(
            f"reference_audio has {wav.shape[0] / s.sampling_rate * 1000:.1f} ms of sound after trimming silence; at "
            f"least {s.n_fft} samples at {s.sampling_rate} Hz are needed to embed a voice (a few seconds work best)"
        )
    return torch.from_numpy(speaker_partials(wav, s, trim=False))
