"""The command line with real (tiny) MOSS folders: inputs and outputs are validated before any model is loaded,
nothing is overwritten without --overwrite, sources are never touched, errors are one line."""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file, save_file

from codectts.cli import main
from codectts.conversion import convert_checkpoint
from codectts.demo import build_tiny_models
from codectts.processing.moss.processor import CodecTTSProcessor

GOLDEN = Path(__file__).parent.parent / "fixtures" / "golden"
CODEC = GOLDEN / "audio_tokenizer" / "model"


@pytest.fixture(scope="module")
def speaking_bundle(tmp_path_factory):
    """A tiny Delay bundle whose random weights reliably open an audio block (see test_cli.make_delay_model_speak)."""
    tokenizer, codec, delay, _ = build_tiny_models(seed=0, n_vq=4)
    config = delay.config
    with torch.no_grad():
        delay.get_input_embeddings().weight[:, 0] += 100.0
        head = delay.get_output_embeddings().weight
        head[:, 0] = 0.0
        head[config.audio_start_token_id, 0] = 50.0
        head[config.audio_assistant_gen_slot_token_id, 0] = 50.0
    folder = tmp_path_factory.mktemp("bundle")
    delay.save_pretrained(folder)
    CodecTTSProcessor.from_model_config(config, tokenizer, codec).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def codec_folder(tmp_path_factory):
    return convert_checkpoint(CODEC, tmp_path_factory.mktemp("codec") / "codec")


def _wav(path: Path, seconds: float = 1.0) -> Path:
    t = np.arange(int(seconds * 24000)) / 24000
    sf.write(path, 0.3 * np.sin(2 * np.pi * 220 * t), 24000)
    return path


def _no_model_loading(monkeypatch):
    from transformers import AutoModel

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the inputs were validated")

    monkeypatch.setattr(AutoModel, "from_pretrained", refuse)


def test_synthesize_validates_inputs_and_output_before_loading(speaking_bundle, tmp_path, monkeypatch, capsys):
    _no_model_loading(monkeypatch)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), 24000)
    existing = tmp_path / "existing.wav"
    existing.write_bytes(b"precious")
    cases = [
        (["--out", str(tmp_path / "x.xyz")], "unsupported output format"),
        (["--out", str(tmp_path)], "folder"),
        (["--out", str(existing)], "--overwrite"),
        (["--out", str(tmp_path / "o.wav"), "--reference", str(tmp_path / "nope.wav")], "no such file"),
        (["--out", str(tmp_path / "o.wav"), "--device", "cuda:99"], "--device"),
    ]
    for extra, message in cases:
        assert main(["synthesize", "Hi.", "--model", str(speaking_bundle), *extra]) == 2, extra
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    assert existing.read_bytes() == b"precious"


def test_synthesize_overwrite_device_dtype(speaking_bundle, tmp_path, capsys):
    out = tmp_path / "speech.wav"
    out.write_bytes(b"old")
    args = ["synthesize", "Hello.", "--model", str(speaking_bundle), "--out", str(out), "--seed", "1",
            "--max-new-tokens", "12", "--device", "cpu", "--dtype", "float32"]
    assert main(args) == 2 and out.read_bytes() == b"old"
    assert main([*args, "--overwrite"]) == 0
    assert sf.info(out).frames > 0
    assert "wrote" in capsys.readouterr().out


def test_zero_frame_reference_is_a_one_line_error(speaking_bundle, codec_folder, tmp_path, capsys):
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros((0, 1), dtype=np.float32), 24000)
    assert main(["synthesize", "Hi.", "--model", str(speaking_bundle), "--out", str(tmp_path / "o.wav"),
                 "--reference", str(empty), "--max-new-tokens", "2"]) == 2
    assert main(["codec", "encode", str(empty), str(tmp_path / "c.safetensors"), "--model", str(codec_folder)]) == 2
    err = capsys.readouterr().err.strip().splitlines()  # validated before any model is loaded: no progress bars
    assert len(err) == 2 and all("no audio samples" in line for line in err), err


def test_model_folders_are_checked(speaking_bundle, codec_folder, tmp_path, capsys):
    wav = _wav(tmp_path / "in.wav")
    bad_config = tmp_path / "bad"
    shutil.copytree(codec_folder, bad_config)
    (bad_config / "config.json").write_text("[1]")
    cases = [
        (["synthesize", "Hi.", "--model", str(tmp_path / "nope"), "--out", str(tmp_path / "o.wav")], "no such folder"),
        (["synthesize", "Hi.", "--model", str(codec_folder), "--out", str(tmp_path / "o.wav")], "TTS model bundle"),
        (["codec", "encode", str(wav), str(tmp_path / "c.safetensors"), "--model", str(tmp_path / "nope")],
         "no such folder"),
        (["codec", "encode", str(wav), str(tmp_path / "c.safetensors"), "--model", str(speaking_bundle)],
         "expected an audio tokenizer"),
        (["codec", "encode", str(wav), str(tmp_path / "c.safetensors"), "--model", str(bad_config)], "JSON object"),
        (["export", str(tmp_path / "nope"), str(tmp_path / "hub")], "no such folder"),
    ]
    for args, message in cases:
        assert main(args) == 2, args
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err


def test_codec_decode_never_guesses_the_orientation(codec_folder, tmp_path, capsys):
    wav = _wav(tmp_path / "in.wav", seconds=1.0)
    codes_file = tmp_path / "codes.safetensors"
    assert main(["codec", "encode", str(wav), str(codes_file), "--model", str(codec_folder)]) == 0
    assert main(["codec", "encode", str(wav), str(codes_file), "--model", str(codec_folder)]) == 2  # exists
    codes = load_file(str(codes_file))["audio_codes"]  # [quantizers, frames], layout in the metadata
    quantizers, frames = codes.shape
    assert frames < quantizers  # 1 s = 13 frames: transposed codes would fit the codec's shape checks
    reference = tmp_path / "ref.wav"
    assert main(["codec", "decode", str(codes_file), str(reference), "--model", str(codec_folder)]) == 0
    # codes saved by hand without a layout: ambiguous shapes are refused, --codes-layout makes them explicit
    transposed = tmp_path / "t.safetensors"
    save_file({"audio_codes": codes.T.contiguous()}, str(transposed))
    out = tmp_path / "t.wav"
    assert main(["codec", "decode", str(transposed), str(out), "--model", str(codec_folder)]) == 2
    assert "--codes-layout" in capsys.readouterr().err and not out.exists()
    assert main(["codec", "decode", str(transposed), str(out), "--model", str(codec_folder),
                 "--codes-layout", "frames-quantizers"]) == 0
    assert np.array_equal(sf.read(out)[0], sf.read(reference)[0])


@pytest.mark.parametrize("command", ["convert", "convert --export", "export"])
def test_output_overlapping_the_source_never_deletes_it(codec_folder, tmp_path, command, capsys):
    parent = tmp_path / "parent"
    src = parent / "src"
    shutil.copytree(CODEC if command.startswith("convert") else codec_folder, src)
    (parent / "notes.txt").write_text("keep me")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    for dst in (parent, src, src / "inside"):
        assert main([*command.split(), str(src), str(dst), "--overwrite"]) == 2
        assert "must differ from the source" in capsys.readouterr().err
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_sigterm_cleans_up_like_ctrl_c(tmp_path):
    from codectts.cli import _terminate_as_exit
    from codectts.conversion.io import atomic_output_dir

    with pytest.raises(SystemExit) as exit_info, _terminate_as_exit(), atomic_output_dir(tmp_path / "out") as out:
        (out / "partial").write_text("x")
        os.kill(os.getpid(), signal.SIGTERM)
    assert exit_info.value.code == 128 + signal.SIGTERM
    assert list(tmp_path.iterdir()) == []
