"""Converter from the official MaskGCT layout: CLI detection, options, validation, loading."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, AutoModel, AutoProcessor

from codectts.cli import main
from codectts.conversion import CheckpointMismatchError, convert_checkpoint
from codectts.conversion.maskgct import is_maskgct_folder
from codectts.modeling.maskgct import MaskGctForTextToSpeech

GOLDEN = Path(__file__).parent.parent / "fixtures" / "golden" / "maskgct"
ORIGINAL = GOLDEN / "original"
OPTIONS = [
    "--config",
    str(ORIGINAL / "maskgct.json"),
    "--semantic-model",
    str(GOLDEN / "w2v_bert_tiny"),
    "--semantic-stats",
    str(GOLDEN / "w2v_bert_stats.safetensors"),
]


def test_cli_detects_the_official_layout(tmp_path):
    assert is_maskgct_folder(ORIGINAL) and not (ORIGINAL / "config.json").exists()
    assert main(["convert", str(ORIGINAL), str(tmp_path / "out"), *OPTIONS]) == 0
    for sub in ("semantic_model", "semantic_codec", "acoustic_codec", "t2s", "s2a_1layer", "s2a_full"):
        assert (tmp_path / "out" / sub / "model.safetensors").is_file(), sub
    assert AutoConfig.from_pretrained(str(tmp_path / "out")).model_type == "maskgct"
    model = AutoModel.from_pretrained(str(tmp_path / "out"))
    assert isinstance(model, MaskGctForTextToSpeech)
    assert type(AutoProcessor.from_pretrained(str(tmp_path / "out"))).__name__ == "MaskGctProcessor"
    # the feature model keeps only the layers MaskGCT reads
    assert model.semantic_model.config.num_hidden_layers == model.config.semantic_layer


def test_save_pretrained_round_trip(model, tmp_path):
    model.save_pretrained(tmp_path / "copy")
    again = AutoModel.from_pretrained(str(tmp_path / "copy"))
    for name in ("t2s", "s2a_full", "acoustic_codec", "semantic_codec", "semantic_model"):
        a, b = getattr(model, name).state_dict(), getattr(again, name).state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name


def test_stats_from_a_torch_file(tmp_path):
    stats = load_file(str(GOLDEN / "w2v_bert_stats.safetensors"))
    torch.save({"mean": stats["mean"], "var": stats["var"]}, tmp_path / "stats.pt")
    out = convert_checkpoint(
        ORIGINAL,
        tmp_path / "out",
        config=ORIGINAL / "maskgct.json",
        semantic_model=GOLDEN / "w2v_bert_tiny",
        semantic_stats=tmp_path / "stats.pt",
    )
    codec = AutoModel.from_pretrained(str(out / "semantic_codec"))
    assert torch.equal(codec.feature_mean, stats["mean"]) and torch.equal(codec.feature_var, stats["var"])


def test_default_stats_are_the_official_ones(tmp_path):
    # the shipped official statistics are 1024-d: they do not fit the tiny 32-d codec -> a clear error
    with pytest.raises(CheckpointMismatchError, match="statistics"):
        convert_checkpoint(
            ORIGINAL, tmp_path / "out", config=ORIGINAL / "maskgct.json", semantic_model=GOLDEN / "w2v_bert_tiny"
        )
    assert not (tmp_path / "out").exists()


def test_mismatched_weights_and_missing_files(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(ORIGINAL, src)
    state = load_file(str(src / "t2s_model" / "model.safetensors"))
    state.pop("mask_emb.weight")
    save_file(state, str(src / "t2s_model" / "model.safetensors"))
    with pytest.raises(CheckpointMismatchError, match="mask_emb.weight"):
        convert_checkpoint(
            src,
            tmp_path / "out",
            config=src / "maskgct.json",
            semantic_model=GOLDEN / "w2v_bert_tiny",
            semantic_stats=GOLDEN / "w2v_bert_stats.safetensors",
        )
    (src / "acoustic_codec" / "model_1.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model_1.safetensors"):
        convert_checkpoint(
            src,
            tmp_path / "out",
            config=src / "maskgct.json",
            semantic_model=GOLDEN / "w2v_bert_tiny",
            semantic_stats=GOLDEN / "w2v_bert_stats.safetensors",
        )
    assert not (tmp_path / "out").exists()


def test_maskgct_options_rejected_for_other_families(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "config.json").write_text('{"encoder_kwargs": {}, "decoder_kwargs": {}}')
    with pytest.raises(ValueError, match="only apply to MaskGCT"):
        convert_checkpoint(tmp_path / "src", tmp_path / "out", semantic_stats=GOLDEN / "w2v_bert_stats.safetensors")


def test_model_card_says_non_commercial_and_its_snippet_runs(converted, monkeypatch, tmp_path):
    import soundfile as sf
    from huggingface_hub import ModelCard

    from codectts.conversion.maskgct.model_card import render_maskgct_card
    from codectts.hub_cards import extract_usage_snippet

    card_text = (converted / "README.md").read_text()
    card = ModelCard(card_text)
    assert card.data.license == "cc-by-nc-4.0" and card.data.pipeline_tag == "text-to-speech"
    assert "non-commercial" in card_text and "${" not in card_text
    text = render_maskgct_card(repo_id=str(converted), config=AutoConfig.from_pretrained(str(converted)).to_dict())
    snippet = extract_usage_snippet(text)
    assert "model.generate(**inputs" in snippet and "AutoProcessor.from_pretrained" in snippet
    prompt = load_file(str(GOLDEN / "outputs_pipeline.safetensors"))["in.prompt_24k"].numpy()
    sf.write(tmp_path / "prompt.wav", prompt, 24000, subtype="FLOAT")
    monkeypatch.chdir(tmp_path)
    exec(compile(snippet, "card", "exec"), {})
    audio, rate = sf.read(tmp_path / "speech.wav")
    assert rate == 24000 and len(audio) > 0
