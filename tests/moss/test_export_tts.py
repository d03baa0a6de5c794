"""Hub export of the Delay and Local generators with processor and codec (convert -> export -> load elsewhere).

The golden tiny checkpoints are converted into bundles (generator + tokenizer + codec) and exported. The model card's
usage snippet then runs twice: in this process on the converted bundle (our classes), and in a fresh interpreter
that cannot import codectts on the exported folder (the flattened remote code). Sampled (seeded) and greedy token
matrices and the decoded waveforms must be bit-identical.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import codectts  # noqa: F401  (registers the Auto classes used on the converted bundle)
from codectts.conversion import convert_checkpoint
from codectts.conversion.export import export_folder
from codectts.conversion.isolation import run_without_codectts
from codectts.hub_cards import extract_usage_snippet

GOLDEN = Path(__file__).parents[1] / "fixtures" / "golden"
REPO_ID = "codectts-test/tiny-{layout}"
GREEDY_NEW_TOKENS = 24

# Runs after the card's snippet, in both processes: greedy decoding of the same prompt, then everything is saved.
AFTER_SNIPPET = f"""
with torch.no_grad():
    greedy = model.generate(**inputs, do_sample=False, max_new_tokens={GREEDY_NEW_TOKENS})
greedy_speech = processor.batch_decode(greedy, input_ids=inputs["input_ids"])[0]
torch.save(
    {{
        "input_ids": inputs["input_ids"],
        "sequences": sequences,
        "waveform": speech,
        "greedy": greedy,
        "greedy_waveform": greedy_speech,
        "classes": [type(model).__module__, type(processor).__module__, type(processor.audio_tokenizer).__module__],
    }},
    "outputs.pt",
)
"""


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module", params=["delay", "local"])
def exported(request, tmp_path_factory):
    layout = request.param
    root = tmp_path_factory.mktemp(f"export_{layout}")
    bundle = convert_checkpoint(
        GOLDEN / f"moss_tts_{layout}" / "model",
        root / "converted",
        tokenizer=GOLDEN / "tokenizer",
        audio_tokenizer=GOLDEN / "audio_tokenizer" / "model",
    )
    repo_id = REPO_ID.format(layout=layout)
    dst = export_folder(bundle, root / f"tiny_{layout}", repo_id=repo_id, base_model=f"OpenMOSS-Team/test-{layout}")
    return layout, bundle, dst, repo_id


def write_reference(folder: Path) -> None:
    """The snippet clones the voice of ``reference.wav`` (here 1.1 s of a deterministic synthetic voice-like tone)."""
    rate = 24000
    t = np.arange(int(1.1 * rate)) / rate
    wave = 0.3 * np.sin(2 * np.pi * 180 * t + 2 * np.sin(2 * np.pi * 4 * t)) * (0.6 + 0.4 * np.sin(2 * np.pi * 2 * t))
    sf.write(folder / "reference.wav", wave.astype(np.float32), rate, subtype="FLOAT")


def test_export_layout(exported):
    layout, _, dst, _ = exported
    config = json.loads((dst / "config.json").read_text())
    family_class = {"delay": "CodecTTSDelayForConditionalGeneration", "local": "CodecTTSLocalForConditionalGeneration"}
    assert config["auto_map"]["AutoModel"] == f"modeling_moss_{layout}.{family_class[layout]}"
    assert (
        config["auto_map"]["AutoConfig"]
        == f"configuration_moss_{layout}.{config['architectures'][0][: -len('ForConditionalGeneration')]}Config"
    )
    assert config["auto_map"]["AutoProcessor"] == "processing_moss_processor.CodecTTSProcessor"
    assert json.loads((dst / "processor_config.json").read_text())["auto_map"] == {
        "AutoProcessor": "processing_moss_processor.CodecTTSProcessor"
    }
    generation = json.loads((dst / "generation_config.json").read_text())
    assert generation["do_sample"] is True
    codec_config = json.loads((dst / "audio_tokenizer" / "config.json").read_text())
    assert codec_config["auto_map"]["AutoModel"] == "modeling_moss_audio_tokenizer.CodecTTSAudioTokenizerModel"
    # the codec's code is at the root too: transformers reads remote code from the repo root even with `subfolder=`
    for name in ("modeling_moss_audio_tokenizer.py", "processing_moss_processor.py", f"modeling_moss_{layout}.py"):
        assert (dst / name).is_file() and (dst / "README.md").is_file()
    assert (dst / "audio_tokenizer" / "modeling_moss_audio_tokenizer.py").read_bytes() == (
        dst / "modeling_moss_audio_tokenizer.py"
    ).read_bytes()
    assert "OpenMOSS-Team/test-" + layout in (dst / "README.md").read_text()


def test_card_snippet_without_codectts_matches_the_converted_model(exported, tmp_path, monkeypatch):
    _, bundle, dst, repo_id = exported
    snippet = extract_usage_snippet((dst / "README.md").read_text())
    assert repo_id in snippet

    remote_dir = tmp_path / "remote"
    remote_dir.mkdir()
    write_reference(remote_dir)
    run_without_codectts(
        snippet.replace(repo_id, str(dst)) + AFTER_SNIPPET, cwd=remote_dir, modules_cache=tmp_path / "modules"
    )
    remote = torch.load(remote_dir / "outputs.pt")
    assert all(module.startswith("transformers_modules.") for module in remote["classes"]), remote["classes"]
    assert (remote_dir / "output.wav").is_file()

    local_dir = tmp_path / "local"
    local_dir.mkdir()
    write_reference(local_dir)
    monkeypatch.chdir(local_dir)
    namespace: dict = {}
    exec(compile(snippet.replace(repo_id, str(bundle)) + AFTER_SNIPPET, "model card snippet", "exec"), namespace)
    local = torch.load(local_dir / "outputs.pt")
    assert not any(module.startswith("transformers_modules.") for module in local["classes"])

    assert torch.equal(remote["input_ids"], local["input_ids"])
    assert local["greedy"].shape[1] > local["input_ids"].shape[1]  # something was generated
    for key in ("sequences", "waveform", "greedy", "greedy_waveform"):
        assert torch.equal(remote[key], local[key]), key


def test_reexport_is_byte_identical(exported, tmp_path):
    layout, bundle, dst, repo_id = exported
    again = export_folder(bundle, tmp_path / dst.name, repo_id=repo_id, base_model=f"OpenMOSS-Team/test-{layout}")
    assert folder_bytes(again) == folder_bytes(dst)


def test_generator_without_processor_is_refused(tmp_path):
    converted = convert_checkpoint(GOLDEN / "moss_tts_local" / "model", tmp_path / "converted")
    with pytest.raises(ValueError, match="exported with its processor"):
        export_folder(converted, tmp_path / "out")
    assert not (tmp_path / "out").exists()
