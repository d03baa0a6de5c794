"""``codectts finetune`` on the tiny models of the README (the demo's random-weight bundle), end to end:
records.jsonl with WAV files -> encoded once -> Trainer (plain and LoRA) -> a bundle that loads with the Auto classes
and exports to the official layout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import soundfile as sf
import torch

import codectts  # noqa: F401
from codectts.cli import main as cli_main
from codectts.conversion.io import read_json


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory) -> Path:
    """The README's recipe: the demo's tiny Delay generator + tokenizer + codec saved as one bundle."""
    from codectts.demo import build_tiny_models, reference_voice
    from codectts.processing.moss.processor import CodecTTSProcessor

    root = tmp_path_factory.mktemp("tiny")
    tokenizer, codec, delay, _ = build_tiny_models(n_vq=4)
    processor = CodecTTSProcessor.from_model_config(delay.config, tokenizer, audio_tokenizer=codec)
    delay.save_pretrained(root / "tiny-delay")
    processor.save_pretrained(root / "tiny-delay")
    data = root / "data"
    (data / "clips").mkdir(parents=True)
    sf.write(data / "clips" / "one.wav", reference_voice(1.2), 24000)
    sf.write(data / "clips" / "two.wav", reference_voice(0.8), 24000)
    records = [
        {"text": "Hello there.", "audio": "clips/one.wav", "language": "English"},
        {"text": "Second clip.", "audio": "clips/two.wav", "reference": "clips/one.wav"},
    ]
    (data / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return root


@pytest.mark.parametrize("lora", [False, True])
def test_finetune_cli_writes_a_loadable_bundle_that_exports(tiny_bundle, tmp_path, capsys, lora):
    from transformers import AutoModel, AutoProcessor

    out = tmp_path / "tuned"
    argv = ["finetune", "--model", str(tiny_bundle / "tiny-delay"), "--data", str(tiny_bundle / "data" / "records.jsonl"),
            "--out", str(out), "--epochs", "2", "--learning-rate", "1e-3"]  # fmt: skip
    if lora:
        argv += ["--lora-rank", "4"]
    assert cli_main(argv) == 0
    printed = capsys.readouterr().out
    assert "fine-tuned codectts_delay on 2 utterance(s)" in printed and "4 optimizer step(s)" in printed
    assert ("LoRA rank 4 (merged)" in printed) == lora
    summary = read_json(out / "training_summary.json")
    assert summary["steps"] == 4 and summary["final_loss"] < summary["first_loss"]
    assert (out / "lora_adapter" / "adapter_config.json").is_file() == lora
    assert not out.with_name("tuned.checkpoints").exists()  # removed after success

    model = AutoModel.from_pretrained(out)
    processor = AutoProcessor.from_pretrained(out)
    assert processor.audio_tokenizer is not None and not any("lora" in k for k in model.state_dict())
    before = AutoModel.from_pretrained(tiny_bundle / "tiny-delay").state_dict()
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert changed
    if lora:  # only the backbone projections moved
        assert all(k.startswith("model.layers.") and k.endswith("proj.weight") for k in changed)

    assert cli_main(["export", str(out), str(tmp_path / "original"), "--format", "original"]) == 0
    assert read_json(tmp_path / "original" / "config.json")["model_type"] == "moss_tts_delay"
    assert read_json(tmp_path / "original" / "audio_tokenizer" / "config.json")["model_type"] == "moss-audio-tokenizer"


def test_finetune_cli_errors(tiny_bundle, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok", "codes": [[1, 2, 3, 4]]}\nnot json\n')
    base = ["finetune", "--model", str(tiny_bundle / "tiny-delay"), "--out", str(tmp_path / "o")]
    assert cli_main([*base, "--data", str(bad)]) == 2
    assert "bad.jsonl:2: not valid JSON" in capsys.readouterr().err
    assert cli_main([*base, "--data", str(tmp_path / "missing.jsonl")]) == 2
    assert "does not exist" in capsys.readouterr().err
    bad.write_text('{"text": "no audio"}\n')
    assert cli_main([*base, "--data", str(bad)]) == 2
    assert "exactly one of 'audio'" in capsys.readouterr().err
    assert cli_main([*base, "--data", str(bad), "--lora-rank", "0", "--epochs", "0"]) == 2
    assert "epochs must be positive" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_finetune_mixed_precision_on_gpu(tiny_bundle, tmp_path, precision):
    from codectts.finetune import finetune

    summary = finetune(
        tiny_bundle / "tiny-delay", tiny_bundle / "data" / "records.jsonl", tmp_path / "out", epochs=3,
        learning_rate=1e-3, lora_rank=4, gradient_checkpointing=True, **{precision: True},
    )  # fmt: skip
    assert summary.final_loss < summary.first_loss
    assert (tmp_path / "out" / "model.safetensors").is_file()
