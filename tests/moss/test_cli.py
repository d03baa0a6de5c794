"""The command line: demo, codec round trip, synthesize from a bundle, convert, and error reporting."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from codectts.cli import main
from codectts.demo import build_tiny_models
from codectts.processing.moss.processor import CodecTTSProcessor

GOLDEN_CODEC = "tests/fixtures/golden/audio_tokenizer/model"


def make_delay_model_speak(model) -> None:
    """Make a random Delay model open an audio block and keep it going (deterministically, for any seed).

    A large constant on one dimension of every text embedding dominates the (tiny, randomly initialised) residual
    stream, so that dimension of the final normed state is large and positive; text-head weights on it then favour
    `<|audio_start|>` and the gen slot over every other token.
    """
    config = model.config
    with torch.no_grad():
        model.get_input_embeddings().weight[:, 0] += 100.0
        head = model.get_output_embeddings().weight
        head[:, 0] = 0.0
        head[config.audio_start_token_id, 0] = 50.0
        head[config.audio_assistant_gen_slot_token_id, 0] = 50.0


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    tokenizer, codec, delay, _ = build_tiny_models(seed=0, n_vq=4)
    make_delay_model_speak(delay)
    folder = tmp_path_factory.mktemp("bundle")
    delay.save_pretrained(folder)
    CodecTTSProcessor.from_model_config(delay.config, tokenizer, codec).save_pretrained(folder)
    return folder


def test_synthesize_writes_audio(bundle, tmp_path, capsys):
    out = tmp_path / "speech.wav"
    assert main(["synthesize", "Hello there.", "--model", str(bundle), "--out", str(out), "--seed", "3",
                 "--max-new-tokens", "20", "--tokens", "15", "--language", "English"]) == 0
    audio, rate = sf.read(out)
    assert rate == 24000
    assert audio.shape[0] > 0 and audio.shape[0] % 1920 == 0
    assert "wrote" in capsys.readouterr().out


def test_synthesize_with_reference_is_deterministic_with_seed(bundle, tmp_path):
    ref = tmp_path / "ref.wav"
    t = np.arange(24000) / 24000
    sf.write(ref, 0.3 * np.sin(2 * np.pi * 180 * t), 16000)  # another rate: resampled on load
    outs = []
    for i in range(2):
        outs.append(tmp_path / f"s{i}.wav")
        assert main(["synthesize", "Hi.", "--model", str(bundle), "--out", str(outs[-1]), "--reference", str(ref),
                     "--seed", "7", "--max-new-tokens", "12"]) == 0
    assert outs[0].read_bytes() == outs[1].read_bytes()


@pytest.mark.parametrize(
    "args, message",
    [(["   "], "empty"), (["Hi", "--tokens", "0"], "--tokens"), (["Hi", "--max-new-tokens", "0"], "max-new-tokens")],
)
def test_synthesize_bad_arguments(bundle, tmp_path, capsys, args, message):
    out = tmp_path / "x.wav"
    assert main(["synthesize", *args, "--model", str(bundle), "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_codec_roundtrip_and_encode_decode(tmp_path):
    wav = tmp_path / "in.wav"
    t = np.arange(int(1.3 * 24000)) / 24000
    sf.write(wav, 0.3 * np.sin(2 * np.pi * 220 * t), 24000)
    model = tmp_path / "codec"
    assert main(["convert", GOLDEN_CODEC, str(model)]) == 0
    assert main(["codec", "roundtrip", str(wav), str(tmp_path / "rt.wav"), "--model", str(model)]) == 0
    assert sf.info(tmp_path / "rt.wav").frames == t.size
    codes = tmp_path / "codes.safetensors"
    assert main(["codec", "encode", str(wav), str(codes), "--model", str(model), "--num-quantizers", "8"]) == 0
    from safetensors.torch import load_file

    stored = load_file(str(codes))["audio_codes"]
    assert stored.shape == (8, 17)  # ceil(1.3 s * 12.5) frames
    assert main(["codec", "decode", str(codes), str(tmp_path / "dec.wav"), "--model", str(model)]) == 0
    assert sf.info(tmp_path / "dec.wav").frames == 17 * 1920


def test_convert_reports_errors(tmp_path, capsys):
    assert main(["convert", str(tmp_path / "missing"), str(tmp_path / "out")]) == 2
    assert "config.json" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_demo_runs_offline(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--max-new-tokens", "12"]) == 0
    printed = capsys.readouterr().out
    assert "RANDOM-WEIGHT" in printed
    for stage in ("encode reference", "generate", "decode"):
        assert stage in printed
    assert sf.info(tmp_path / "reference.wav").frames > 0
    for name in ("delay", "local"):
        assert (tmp_path / f"{name}.wav").exists()


def test_export_and_convert_export_cli(tmp_path, monkeypatch, capsys):
    import huggingface_hub

    uploads = []

    class FakeHfApi:
        def __init__(self, token=None, **kwargs):
            pass

        def create_repo(self, **kwargs):
            uploads.append(("create_repo", kwargs))

        def upload_folder(self, **kwargs):
            uploads.append(("upload_folder", kwargs))

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHfApi)
    converted = tmp_path / "converted"
    assert main(["convert", GOLDEN_CODEC, str(converted)]) == 0
    assert main(["export", str(converted), str(tmp_path / "hub"), "--push-to-hub", "me/codec", "--private"]) == 0
    assert (tmp_path / "hub" / "README.md").is_file()
    config = (tmp_path / "hub" / "config.json").read_text()
    assert "auto_map" in config
    assert [name for name, _ in uploads] == ["create_repo", "upload_folder"]
    assert uploads[0][1]["repo_id"] == "me/codec" and uploads[0][1]["private"] is True
    # convert + export in one go gives the same folder as the two steps
    assert main(["convert", GOLDEN_CODEC, str(tmp_path / "hub2"), "--export", "--repo-id", "me/codec"]) == 0
    for path in sorted((tmp_path / "hub").rglob("*")):
        if path.is_file():
            assert (tmp_path / "hub2" / path.relative_to(tmp_path / "hub")).read_bytes() == path.read_bytes(), path
    assert "exported" in capsys.readouterr().out
