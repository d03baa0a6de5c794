"""Audio input handling: files (wav/flac/ogg/mp3), sample rates, channel layouts, integer PCM, bad input."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import soundfile as sf
import torch
from codectts.processing.audio_io import (
    AudioInputError,
    load_audio_file,
    loudness_normalize,
    prepare_waveform,
    save_audio,
    to_mono,
)

TARGET = 24000


def tone(rate: int, seconds: float = 0.5, freq: float = 440.0, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def assert_close_to_tone(wav: np.ndarray, atol: float, freq: float = 440.0, amplitude: float = 0.5):
    expected = tone(TARGET, len(wav) / TARGET, freq, amplitude)
    assert wav.dtype == np.float32 and wav.ndim == 1
    assert abs(len(wav) - len(expected)) <= 1
    n = min(len(wav), len(expected))
    inner = slice(200, n - 200)  # resampler edge effects
    np.testing.assert_allclose(wav[inner], expected[inner], atol=atol)


@pytest.mark.parametrize(
    "suffix,subtype,atol",
    [(".wav", "PCM_16", 1e-3), (".wav", "FLOAT", 1e-3), (".flac", "PCM_16", 1e-3), (".ogg", "VORBIS", 0.05)],
)
@pytest.mark.parametrize("rate", [16000, 24000, 44100])
def test_files_any_rate_are_resampled(tmp_path, suffix, subtype, atol, rate):
    path = tmp_path / f"voice{suffix}"
    sf.write(path, tone(rate), rate, subtype=subtype)
    wav = prepare_waveform(path, TARGET)
    assert_close_to_tone(wav, atol)


def test_stereo_file_is_mixed_down(tmp_path):
    left, right = tone(44100, amplitude=0.8), tone(44100, amplitude=0.2)
    sf.write(tmp_path / "stereo.wav", np.stack([left, right], axis=1), 44100, subtype="FLOAT")
    data, rate = load_audio_file(tmp_path / "stereo.wav")
    assert data.shape == (2, len(left)) and rate == 44100
    assert_close_to_tone(prepare_waveform(tmp_path / "stereo.wav", TARGET), 1e-3)  # mean amplitude 0.5


def test_mp3_file_if_supported(tmp_path):
    path = tmp_path / "voice.mp3"
    try:
        sf.write(path, tone(24000, seconds=1.0), 24000, format="MP3")
    except (sf.LibsndfileError, TypeError, ValueError):
        pytest.skip("this libsndfile cannot write MP3")
    wav = prepare_waveform(path, TARGET)
    expected = tone(TARGET, len(wav) / TARGET)
    # lossy codec with encoder delay: check the spectrum peak instead of samples
    spectrum = np.abs(np.fft.rfft(wav))
    assert abs(np.argmax(spectrum) * TARGET / len(wav) - 440.0) < 5.0
    assert 0.2 < np.abs(wav).max() < 0.8 and len(expected) > 0


@pytest.mark.skipif(importlib.util.find_spec("av") is not None, reason="PyAV is installed")
def test_m4a_without_decoder_gives_clear_error(tmp_path):
    path = tmp_path / "voice.m4a"
    path.write_bytes(b"\x00" * 64)
    with pytest.raises(ImportError, match="pip install av"):
        prepare_waveform(path, TARGET)


@pytest.mark.parametrize(
    "make",
    [
        lambda x: x,  # [samples]
        lambda x: x[None],  # [1, samples]
        lambda x: np.stack([x, x]),  # [channels, samples]
        lambda x: np.stack([x, x], axis=1),  # [samples, channels] (soundfile layout)
        lambda x: np.stack([x, x])[None],  # [1, channels, samples]
        lambda x: torch.from_numpy(x),
        lambda x: torch.from_numpy(x).double(),
        lambda x: torch.from_numpy(x).to(torch.bfloat16),
        lambda x: (x * 32767).astype(np.int16),
        lambda x: torch.from_numpy((x * 32767).astype(np.int16)),
        lambda x: (x * 2147483647).astype(np.int32),
    ],
)
def test_array_layouts_and_dtypes(make):
    x = tone(TARGET)
    wav = to_mono(make(x))
    np.testing.assert_allclose(wav, x, atol=1e-2 if wav.dtype != x.dtype else 5e-3)
    np.testing.assert_allclose(prepare_waveform((make(x), TARGET), TARGET), wav)


def test_array_with_rate_is_resampled():
    wav = prepare_waveform((tone(16000), 16000), TARGET)
    assert_close_to_tone(wav, 1e-3)


@pytest.mark.parametrize(
    "bad,match",
    [
        (np.zeros(0, dtype=np.float32), "empty"),
        (np.zeros(TARGET, dtype=np.float32), "silent"),
        (np.full(TARGET, np.nan, dtype=np.float32), "NaN"),
        (np.full(TARGET, np.inf, dtype=np.float32), "NaN or infinite"),
        (np.zeros((2, 3, 4), dtype=np.float32), "shape"),
        (np.zeros((100, 100), dtype=np.float32), "channels from samples"),
        (np.array(["a", "b"]), "dtype"),
        (np.ones(10, dtype=bool), "boolean"),
    ],
)
def test_bad_arrays_raise(bad, match):
    with pytest.raises(AudioInputError, match=match):
        prepare_waveform(bad, TARGET)


def test_too_short_and_unreadable(tmp_path):
    with pytest.raises(AudioInputError, match="too short"):
        prepare_waveform(tone(TARGET)[:1000], TARGET, min_samples=1920)
    (tmp_path / "junk.wav").write_bytes(b"not audio at all")
    with pytest.raises(AudioInputError, match="cannot read"):
        prepare_waveform(tmp_path / "junk.wav", TARGET)
    with pytest.raises(FileNotFoundError):
        prepare_waveform(tmp_path / "missing.flac", TARGET)
    with pytest.raises(AudioInputError, match="positive"):
        prepare_waveform((tone(TARGET), 0), TARGET)


def test_long_reference_warns(caplog):
    long = np.tile(tone(TARGET, 1.0), 61)
    with caplog.at_level("WARNING"):
        prepare_waveform(long, TARGET)
    assert "long" in caplog.text


def test_loudness_normalize_gain_is_clamped():
    quiet = torch.from_numpy(tone(TARGET, amplitude=0.001))
    loud = torch.from_numpy(tone(TARGET, amplitude=0.99))
    mid = torch.from_numpy(tone(TARGET, amplitude=0.1414))  # ~ -20 dBFS mean power
    np.testing.assert_allclose(loudness_normalize(quiet).abs().max() / quiet.abs().max(), 10 ** (3 / 20), rtol=1e-5)
    np.testing.assert_allclose(loudness_normalize(loud).abs().max() / loud.abs().max(), 10 ** (-3 / 20), rtol=1e-5)
    power_db = 10 * torch.log10(loudness_normalize(mid).pow(2).mean())
    assert abs(float(power_db) + 20.0) < 0.01


def test_save_audio_formats_and_channels(tmp_path):
    x = tone(TARGET)
    for name in ("a.wav", "a.flac", "a.ogg"):
        save_audio(x, tmp_path / name, TARGET)
        data, rate = sf.read(tmp_path / name, dtype="float32")
        assert rate == TARGET and data.shape[0] == len(x)
    save_audio(np.stack([x, -x]), tmp_path / "stereo.wav", TARGET)
    data, _ = sf.read(tmp_path / "stereo.wav", dtype="float32")
    assert data.shape == (len(x), 2)
    with pytest.raises(ValueError, match="unsupported output format"):
        save_audio(x, tmp_path / "a.xyz", TARGET)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.flac", "a.ogg", "a.wav", "stereo.wav"]
