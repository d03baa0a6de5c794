"""Converter: the official `.pt` folder and the safetensors variant -> one folder that the Auto classes load."""

from __future__ import annotations

import pickle
import shutil

import pytest
import torch
from safetensors.torch import load_file

from codectts.conversion import CheckpointMismatchError, convert_checkpoint
from codectts.conversion.metavoice import is_metavoice_folder, load_original_checkpoint


def test_auto_classes_load_the_converted_folder(converted, model, processor):
    from codectts.modeling.metavoice import MetaVoiceForTextToSpeech
    from codectts.processing.metavoice import MetaVoiceProcessor

    assert isinstance(model, MetaVoiceForTextToSpeech) and isinstance(processor, MetaVoiceProcessor)
    assert model.codec is None
    # tied head: one tensor, the embedding
    assert model.first_stage.lm_head.weight.data_ptr() == model.first_stage.embed_tokens.weight.data_ptr()
    assert sorted(p.name for p in converted.iterdir()) == [
        "config.json",
        "metavoice_tokenizer.json",
        "model.safetensors",
        "processor_config.json",
    ]


def test_safetensors_variant_converts_to_the_same_weights(converted, safetensors_source, tmp_path):
    assert is_metavoice_folder(safetensors_source)
    out = convert_checkpoint(safetensors_source, tmp_path / "st")
    a, b = load_file(converted / "model.safetensors"), load_file(out / "model.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (out / "metavoice_tokenizer.json").read_text() == (converted / "metavoice_tokenizer.json").read_text()


def test_cli_convert_detects_the_metavoice_folder(pt_source, tmp_path):
    from codectts.cli import main

    src = tmp_path / "src"
    shutil.copytree(pt_source, src)
    (src / "config.json").write_text('{"model_type": "metavoice"}')  # the Hub repo's stub
    dst = tmp_path / "cli"
    assert main(["convert", str(src), str(dst)]) == 0
    assert (dst / "config.json").is_file() and (dst / "model.safetensors").is_file()
    # a MetaVoice folder takes no MOSS tokenizer; the CLI reports it as a usage error
    assert main(["convert", str(pt_source), str(tmp_path / "x"), "--tokenizer", str(pt_source)]) == 2


def test_pt_files_load_with_the_safe_unpickler(pt_source):
    data = load_original_checkpoint(pt_source / "first_stage.pt")
    assert set(data) >= {"model", "model_args", "meta"}
    assert isinstance(next(iter(data["meta"]["tokenizer"]["mergeable_ranks"])), bytes)


class _Opaque:  # a pickled Python object the safe loader must refuse
    pass


def test_unsafe_pickle_is_refused_with_an_explanation(pt_source, tmp_path, monkeypatch):
    src = tmp_path / "src"
    shutil.copytree(pt_source, src)
    data = torch.load(src / "first_stage.pt", weights_only=True)
    data["training_state"] = _Opaque()
    torch.save(data, src / "first_stage.pt")
    monkeypatch.delenv("CODECTTS_TRUST_PICKLE", raising=False)
    with pytest.raises(CheckpointMismatchError, match="trust_pickle"):
        convert_checkpoint(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing half-written
    with pytest.raises(pickle.UnpicklingError):
        torch.load(src / "first_stage.pt", weights_only=True)


def test_mismatched_checkpoint_is_rejected(pt_source, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(pt_source, src)
    data = torch.load(src / "second_stage.pt", weights_only=True)
    data["model_args"]["norm_type"] = "rmsnorm"
    torch.save(data, src / "second_stage.pt")
    with pytest.raises(CheckpointMismatchError, match="norm_type"):
        convert_checkpoint(src, tmp_path / "out")


def test_codec_flag_only_for_metavoice(tmp_path):
    (tmp_path / "src").mkdir()
    with pytest.raises(ValueError, match="--codec only applies"):
        convert_checkpoint(tmp_path / "src", tmp_path / "out", codec=tmp_path)


def test_loaded_weights_are_the_converted_ones(converted, model):
    """Every stored tensor arrives unchanged (weight init must not touch loaded tensors on any transformers)."""
    stored = load_file(converted / "model.safetensors")
    state = model.state_dict()
    assert set(state) - set(stored) == {"first_stage.lm_head.weight"}  # tied to the embedding, not stored
    assert all(torch.equal(state[k], v) for k, v in stored.items())


def test_sub_models_save_and_load_on_their_own(model, tmp_path):
    from transformers import AutoModel

    idx = torch.tensor([[2121, 2150, 2314, 2561]])
    for name in ("first_stage", "second_stage", "speaker_encoder"):
        part = getattr(model, name)
        part.save_pretrained(tmp_path / name)
        again = AutoModel.from_pretrained(tmp_path / name).eval()
        assert type(again) is type(part)
        assert all(torch.equal(a, b) for a, b in zip(part.state_dict().values(), again.state_dict().values()))
    first = AutoModel.from_pretrained(tmp_path / "first_stage").eval()
    assert first.lm_head.weight.data_ptr() == first.embed_tokens.weight.data_ptr()
    torch.testing.assert_close(first(idx).logits, model.first_stage(idx).logits)
