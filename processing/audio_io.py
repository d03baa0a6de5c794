"""Audio input/output: loading, validation, down-mixing, resampling, loudness normalisation, atomic saving.

Everything works on float32 numpy arrays internally; no torchaudio.

* Files: WAV/FLAC/OGG/MP3 (and the other libsndfile formats) through ``soundfile``; M4A/AAC/MP4/WebM through the
  optional PyAV decoder (``pip install av``), with a clear error when it is missing.
* Arrays/tensors: 1-D ``[samples]`` or 2-D channel-first ``[channels, samples]`` (also accepted: channel-last
  ``[samples, channels]`` as ``soundfile`` returns it, recognised when exactly one dimension is a plausible channel
  count); ``[1, channels, samples]`` batches of one. float (any precision) or integer PCM (int16/int32/uint8, scaled
  to [-1, 1]).
* Resampling: ``soxr`` (VHQ). Channels are averaged (mono codec).
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

logger = logging.getLogger(__name__)

MAX_CHANNELS = 16
# Above this a reference is still used, but a warning is logged: the prompt grows by 12.5 rows per second.
LONG_REFERENCE_SECONDS = 60.0
# Peak amplitude below which a reference is considered silent (about -100 dBFS).
SILENCE_PEAK = 1e-5
# Float audio lies in [-1, 1] (a little over after processing). A peak far beyond it is integer PCM stored as float,
# or a wrong unit: the codec would encode it to all-equal codes, so it is refused instead of silently ruined.
MAX_FLOAT_PEAK = 16.0

_PYAV_SUFFIXES = {".m4a", ".mp4", ".aac", ".webm", ".opus", ".wma", ".mkv", ".3gp"}


class AudioInputError(ValueError):
    """An audio input cannot be used (unreadable, empty, silent, NaN, wrong shape, ...)."""


# ---------------------------------------------------------------------------------------------------------------------
# loading
# ---------------------------------------------------------------------------------------------------------------------


def _load_with_pyav(path: Path) -> tuple[np.ndarray, int]:
    try:
        import av
    except ImportError as error:
        raise ImportError(
            f"reading {path.suffix} files needs the optional PyAV decoder: `pip install av` "
            "(or convert the file to WAV/FLAC first)"
        ) from error
    with av.open(str(path)) as container:
        stream = next((s for s in container.streams if s.type == "audio"), None)
        if stream is None:
            raise AudioInputError(f"{path} has no audio stream")
        rate = stream.rate
        chunks = [frame.to_ndarray() for frame in container.decode(stream)]
    if not chunks:
        raise AudioInputError(f"{path} contains no audio samples")
    # PyAV gives [channels, samples] for planar formats and [1, samples * channels] for packed (interleaved) ones.
    channels = stream.channels or 1
    data = np.concatenate(chunks, axis=1)
    if data.shape[0] == 1 and channels > 1:
        data = data.reshape(-1, channels).T
    return _to_float(data), int(rate)


def load_audio_file(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Read an audio file; returns ``(float32 [channels, samples], sampling_rate)``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"audio file not found: {path}")
    if path.suffix.lower() in _PYAV_SUFFIXES:
        return _load_with_pyav(path)
    import soundfile as sf

    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except sf.LibsndfileError as error:
        raise AudioInputError(f"cannot read audio file {path}: {error}") from error
    if data.shape[0] == 0:
        raise AudioInputError(f"{path} contains no audio samples (0 frames)")
    return np.ascontiguousarray(data.T), int(rate)


# ---------------------------------------------------------------------------------------------------------------------
# conversion
# ---------------------------------------------------------------------------------------------------------------------


def _to_float(data: np.ndarray) -> np.ndarray:
    """Integer PCM → float32 in [-1, 1]; floats → float32."""
    if data.dtype.kind == "f":
        return data.astype(np.float32, copy=False)
    if data.dtype.kind == "i":
        return (data.astype(np.float64) / float(2 ** (8 * data.dtype.itemsize - 1))).astype(np.float32)
    if data.dtype.kind == "u":
        half = float(2 ** (8 * data.dtype.itemsize - 1))
        return ((data.astype(np.float64) - half) / half).astype(np.float32)
    if data.dtype.kind == "b":
        raise AudioInputError("boolean arrays are not audio")
    raise AudioInputError(f"unsupported audio dtype {data.dtype}")


def _as_channels_first(data: np.ndarray) -> np.ndarray:
    if data.ndim == 3 and data.shape[0] == 1:
        data = data[0]
    if data.ndim == 1:
        return data[None]
    if data.ndim != 2:
        raise AudioInputError(f"audio must be 1-D [samples] or 2-D [channels, samples], got shape {tuple(data.shape)}")
    rows_are_channels = data.shape[0] <= MAX_CHANNELS and data.shape[0] < data.shape[1]
    cols_are_channels = data.shape[1] <= MAX_CHANNELS and data.shape[1] < data.shape[0]
    if rows_are_channels:
        return data
    if cols_are_channels:
        return data.T
    raise AudioInputError(
        f"cannot tell channels from samples in audio of shape {tuple(data.shape)}: pass [channels, samples] with at "
        f"most {MAX_CHANNELS} channels"
    )


def to_mono(data: Any) -> np.ndarray:
    """Array/tensor of any supported layout and dtype → float32 mono ``[samples]``."""
    if isinstance(data, torch.Tensor):
        data = data.detach().cpu()
        data = data.float().numpy() if data.is_floating_point() and data.dtype != torch.float64 else data.numpy()
    data = np.asarray(data)
    if data.dtype == object:
        raise AudioInputError("audio must be a numeric array")
    if data.size == 0:
        raise AudioInputError(f"audio is empty (shape {tuple(data.shape)}, no samples)")
    data = _as_channels_first(_to_float(data))
    return data.mean(axis=0, dtype=np.float64).astype(np.float32) if data.shape[0] > 1 else data[0]


def resample(wav: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
    """Resample a mono float32 waveform with soxr (no-op when the rates match)."""
    if orig_rate <= 0 or target_rate <= 0:
        raise AudioInputError(f"sampling rates must be positive, got {orig_rate} -> {target_rate}")
    if orig_rate == target_rate:
        return wav
    import soxr

    return soxr.resample(wav, orig_rate, target_rate, quality="VHQ").astype(np.float32, copy=False)


def loudness_normalize(
    wav: torch.Tensor, target_dbfs: float = -20.0, max_gain_db: float = 3.0, eps: float = 1e-9
) -> torch.Tensor:
    """Move the mean power toward ``target_dbfs`` with the gain clamped to ``±max_gain_db`` (the checkpoints' recipe).

    ``dBFS = 10·log10(mean(x²) + eps)``, ``gain = clamp(target − dBFS, −max_gain, +max_gain)``, ``x · 10^(gain/20)``;
    float32 result.
    """
    wav = wav.to(torch.float32)
    dbfs = 10.0 * torch.log10(wav.pow(2).mean() + eps)
    gain = torch.clamp(target_dbfs - dbfs, min=-max_gain_db, max=max_gain_db)
    return wav * torch.pow(torch.tensor(10.0, dtype=torch.float32), gain / 20.0)


def prepare_waveform(item: Any, target_rate: int, *, min_samples: int = 1, what: str = "audio") -> np.ndarray:
    """Turn a path, ``(array, rate)`` pair or array/tensor (assumed at ``target_rate``) into mono float32 at
    ``target_rate``, validated.

    Raises:
        AudioInputError: unreadable, empty, shorter than ``min_samples`` after resampling (e.g. less than one codec
            frame), NaN/inf samples, silent, or an unusable shape.
    """
    if isinstance(item, (str, os.PathLike)):
        data, rate = load_audio_file(item)
        source = str(item)
    elif isinstance(item, tuple) and len(item) == 2 and np.isscalar(item[1]):
        data, rate = item
        source = f"{what} array"
    else:
        data, rate = item, target_rate
        source = f"{what} array"
    wav = to_mono(data)
    if wav.size == 0:
        raise AudioInputError(f"{source} is empty")
    if not np.isfinite(wav).all():
        raise AudioInputError(f"{source} contains NaN or infinite samples")
    wav = resample(wav, int(rate), target_rate)
    if wav.shape[0] < min_samples:
        raise AudioInputError(
            f"{source} is too short: {wav.shape[0] / target_rate * 1000:.1f} ms, need at least "
            f"{min_samples / target_rate * 1000:.1f} ms (one codec frame)"
        )
    peak = float(np.abs(wav).max())
    if peak > MAX_FLOAT_PEAK:
        raise AudioInputError(
            f"{source} has samples up to {peak:.4g}, but float audio lies in [-1, 1]; scale it (integer PCM stored as "
            "float: divide by 32768)"
        )
    if peak < SILENCE_PEAK:
        raise AudioInputError(f"{source} is silent (peak below {SILENCE_PEAK:g}); a reference voice needs sound")
    seconds = wav.shape[0] / target_rate
    if seconds > LONG_REFERENCE_SECONDS:
        logger.warning(
            "%s is %.1f s long; references above %.0f s make long prompts (12.5 rows/s) and rarely help",
            source,
            seconds,
            LONG_REFERENCE_SECONDS,
        )
    return wav


# ---------------------------------------------------------------------------------------------------------------------
# saving
# ---------------------------------------------------------------------------------------------------------------------


def _umask_file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def check_audio_output_path(path: str | os.PathLike, *, overwrite: bool = True, subtype: str | None = None) -> Path:
    """Validate where :func:`save_audio` will write, before any expensive work: a format soundfile writes (from the
    suffix), a valid ``subtype`` for it, not a folder, and (unless ``overwrite``) no existing file."""
    import soundfile as sf

    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"the output {path} is a folder; give a file name such as {path / 'out.wav'}")
    fmt = path.suffix.lstrip(".").upper()
    if fmt not in sf.available_formats():
        raise ValueError(
            f"unsupported output format {path.suffix or '(no suffix)'!r} for {path}; use e.g. .wav, .flac or .ogg"
        )
    if subtype is not None and not sf.check_format(fmt, subtype):
        raise ValueError(f"subtype {subtype!r} is not valid for {fmt} files; e.g. {sf.default_subtype(fmt)}")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass --overwrite (overwrite=True) to replace it")
    if path.parent.exists() and not path.parent.is_dir():
        raise NotADirectoryError(f"cannot write {path}: {path.parent} is not a folder")
    return path


def save_audio(audio: Any, path: str | os.PathLike, sampling_rate: int, *, subtype: str | None = None) -> Path:
    """Write a waveform atomically (temporary file in the same folder, then ``os.replace``).

    ``audio``: ``[samples]`` or ``[channels, samples]`` float array/tensor. The format follows the suffix
    (``.wav``, ``.flac``, ``.ogg``, ...; WAV defaults to 16-bit PCM after clipping to [-1, 1]).
    """
    import soundfile as sf

    path = Path(path)
    if isinstance(audio, torch.Tensor):
        audio = audio.detach().to(torch.float32).cpu().numpy()
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 2:
        audio = _as_channels_first(audio).T  # soundfile wants [samples, channels]
    elif audio.ndim != 1:
        raise AudioInputError(f"audio to save must be [samples] or [channels, samples], got {audio.shape}")
    if not np.isfinite(audio).all():
        raise AudioInputError("refusing to save audio with NaN or infinite samples")
    check_audio_output_path(path, subtype=subtype)
    fmt = path.suffix.lstrip(".").upper()
    if subtype is None and fmt == "WAV":
        subtype = "PCM_16"
    if subtype and subtype.startswith("PCM"):
        audio = np.clip(audio, -1.0, 1.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            sf.write(handle, audio, int(sampling_rate), format=fmt, subtype=subtype)
        os.chmod(tmp, _umask_file_mode())  # mkstemp files are private (0600); give the usual mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
