"""``codectts export SRC DST --format original``: codectts folders back to the official MOSS layouts.

Round trip on every golden checkpoint (audio tokenizer, Delay, Local): original -> ``convert`` -> ``export --format
original`` gives the original tensor names with the original bits (weight-norm pairs: the effective weight
``g * v / ||v||``), the original config values, and sharded safetensors with an index; converting the export again gives
the converted folder back bit for bit.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from codectts.cli import main as cli_main
from codectts.conversion import convert_checkpoint
from codectts.conversion.io import load_state_dict, read_json
from codectts.conversion.moss.original_export import (
    OriginalLayoutError,
    export_original,
    original_local_config,
    unfold_weight_norm,
)

GOLDEN = Path(__file__).resolve().parent.parent / "fixtures" / "golden"
KINDS = {"audio_tokenizer": "audio_tokenizer", "delay": "moss_tts_delay", "local": "moss_tts_local"}
WN = ".parametrizations.weight.original"
LOCAL_UNUSED = "model.language_model.embed_tokens.weight"
# bookkeeping that names the writer, not the model
IGNORED_CONFIG_KEYS = {"transformers_version"}


def effective_weight(g: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """What the original evaluates for a weight-norm pair (PyTorch's own parametrization)."""
    conv = nn.utils.parametrizations.weight_norm(nn.Conv1d(v.shape[1], v.shape[0], 1, bias=False), dim=0)
    with torch.no_grad():
        conv.parametrizations.weight.original0.copy_(g)
        conv.parametrizations.weight.original1.copy_(v)
        return conv.weight.detach().clone()


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("converted")
    return {kind: convert_checkpoint(GOLDEN / folder / "model", root / kind) for kind, folder in KINDS.items()}


@pytest.fixture(scope="module")
def exported(converted, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("exported")
    # a small shard limit so that every checkpoint is written sharded, with an index, as the releases are
    return {kind: export_original(src, root / kind, max_shard_bytes=1_000_000) for kind, src in converted.items()}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_round_trip_reproduces_every_original_tensor(kind, exported):
    original = load_state_dict(GOLDEN / KINDS[kind] / "model")
    again = load_state_dict(exported[kind])
    assert set(again) == set(original)
    folded = 0
    for key, tensor in original.items():
        assert again[key].dtype == tensor.dtype, key
        if WN in key:
            if key.endswith("original0"):
                prefix = key[: -len(WN + "0")]
                before = effective_weight(tensor, original[prefix + WN + "1"])
                after = effective_weight(again[key], again[prefix + WN + "1"])
                assert torch.equal(after, before), f"effective weight of {prefix} differs"
                folded += 1
        elif key == LOCAL_UNUSED:
            # never read by the original; the converter drops it and the export writes the text embedding in use
            assert torch.equal(again[key], original["model.embedding_list.0.weight"])
        else:
            assert torch.equal(again[key], tensor), key
    if kind == "audio_tokenizer":
        assert (
            folded
            == 2 + 2 * read_json(GOLDEN / KINDS[kind] / "model" / "config.json")["quantizer_kwargs"]["num_quantizers"]
        )


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_round_trip_reproduces_the_original_config(kind, exported):
    original = read_json(GOLDEN / KINDS[kind] / "model" / "config.json")
    again = read_json(exported[kind] / "config.json")
    strip = lambda d: {k: v for k, v in d.items() if k not in IGNORED_CONFIG_KEYS}
    assert strip(again) == strip(original)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_export_is_sharded_with_an_index(kind, exported):
    index = read_json(exported[kind] / "model.safetensors.index.json")
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 1 and all((exported[kind] / name).is_file() for name in shards)
    assert shards[0] == f"model-00001-of-{len(shards):05d}.safetensors"
    assert not (exported[kind] / "model.safetensors").exists()
    assert set(index["weight_map"]) == set(load_state_dict(exported[kind]))


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_converting_the_export_gives_the_converted_folder_back(kind, converted, exported, tmp_path):
    again = convert_checkpoint(exported[kind], tmp_path / "again")
    first, second = load_state_dict(converted[kind]), load_state_dict(again)
    assert set(first) == set(second)
    for key in first:
        assert torch.equal(first[key], second[key]), key
    strip = lambda d: {k: v for k, v in d.items() if k not in IGNORED_CONFIG_KEYS}
    assert strip(read_json(again / "config.json")) == strip(read_json(converted[kind] / "config.json"))


def test_unknown_original_fields_come_back(tmp_path):
    """Fields our config does not model (auto_map of the releases, VoiceGenerator's gen_token_id) survive."""
    src = tmp_path / "original"
    src.mkdir()
    config = read_json(GOLDEN / "moss_tts_delay" / "model" / "config.json")
    config["auto_map"] = {
        "AutoConfig": "configuration_moss_tts.MossTTSDelayConfig",
        "AutoModel": "modeling_moss_tts.MossTTSDelayModel",
    }
    config["gen_token_id"] = 151656
    (src / "config.json").write_text(json.dumps(config))
    (src / "model.safetensors").symlink_to(GOLDEN / "moss_tts_delay" / "model" / "model.safetensors")
    converted = convert_checkpoint(src, tmp_path / "converted")
    exported = export_original(converted, tmp_path / "exported")
    again = read_json(exported / "config.json")
    assert again["auto_map"] == config["auto_map"] and again["gen_token_id"] == 151656


def test_unfold_weight_norm_is_exact_and_refuses_zero_rows():
    weight = torch.randn(7, 5)
    g, v = unfold_weight_norm(weight)
    assert g.shape == (7, 1, 1) and v.shape == (7, 5, 1)
    assert torch.equal(effective_weight(g, v)[:, :, 0], weight)
    weight[3] = 0
    with pytest.raises(OriginalLayoutError, match=r"all-zero rows \[3\]"):
        unfold_weight_norm(weight, "quantizer.input_proj.weight")


def test_bundle_exports_model_tokenizer_and_codec_in_their_original_layouts(tmp_path):
    bundle = convert_checkpoint(
        GOLDEN / "moss_tts_delay" / "model",
        tmp_path / "bundle",
        tokenizer=GOLDEN / "tokenizer",
        audio_tokenizer=GOLDEN / "audio_tokenizer" / "model",
    )
    out = export_original(bundle, tmp_path / "out")
    assert read_json(out / "config.json")["model_type"] == "moss_tts_delay"
    assert (out / "tokenizer.json").read_bytes() == (bundle / "tokenizer.json").read_bytes()
    assert (out / "chat_template.jinja").is_file()
    assert not (out / "processor_config.json").exists()  # ours would mislead the original processor
    codec = read_json(out / "audio_tokenizer" / "config.json")
    assert codec["model_type"] == "moss-audio-tokenizer"
    original_codec = load_state_dict(GOLDEN / "audio_tokenizer" / "model")
    assert set(load_state_dict(out / "audio_tokenizer")) == set(original_codec)


def test_cli_export_format_original(converted, tmp_path, capsys):
    assert cli_main(["export", str(converted["local"]), str(tmp_path / "out"), "--format", "original"]) == 0
    assert "official MOSS layout" in capsys.readouterr().out
    assert read_json(tmp_path / "out" / "config.json")["local_num_layers"] > 0
    assert cli_main(["export", str(converted["local"]), str(tmp_path / "o2"), "--format", "original",
                     "--push-to-hub", "me/x"]) == 2  # fmt: skip
    assert "only apply to --format hub" in capsys.readouterr().err


def test_refuses_what_the_original_layout_cannot_represent(converted, tmp_path):
    with pytest.raises(OriginalLayoutError, match="already in the original layout"):
        export_original(GOLDEN / "moss_tts_delay" / "model", tmp_path / "a")
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    with pytest.raises(OriginalLayoutError, match="PEFT adapter.*merge"):
        export_original(adapter, tmp_path / "b")
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "qwen3"}))
    with pytest.raises(OriginalLayoutError, match="no official MOSS layout"):
        export_original(other, tmp_path / "c")
    from transformers import AutoConfig

    import codectts  # noqa: F401

    config = AutoConfig.from_pretrained(converted["local"])
    config.head_norm_eps = 1e-5
    with pytest.raises(OriginalLayoutError, match="head_norm_eps"):
        original_local_config(config)
    config.head_norm_eps = 1e-6
    config.text_config.tie_word_embeddings = True
    with pytest.raises(OriginalLayoutError, match="tie_word_embeddings"):
        original_local_config(config)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # nothing half-written


def test_original_code_of_the_release_is_copied_next_to_the_weights(converted, tmp_path, capsys):
    release = tmp_path / "MOSS-TTS"
    release.mkdir()
    (release / "modeling_moss_tts.py").write_text("# remote code\n")
    (release / "processor_config.json").write_text('{"processor_class": "MossTTSDelayProcessor"}')
    (release / "config.json").write_text('{"model_type": "moss_tts_delay"}')  # never copied over the export's
    (release / "model.safetensors").write_text("not weights")
    out = export_original(converted["delay"], tmp_path / "out", original_code=release)
    assert (out / "modeling_moss_tts.py").read_text() == "# remote code\n"
    assert (out / "processor_config.json").is_file()
    assert "language_config" in read_json(out / "config.json")
    assert load_state_dict(out)  # the export's weights, not the release's file
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no remote-code files"):
        export_original(converted["delay"], tmp_path / "out2", original_code=empty)
    assert not (tmp_path / "out2").exists()
    argv = ["export", str(converted["delay"]), str(tmp_path / "hub"), "--original-code", str(release)]
    assert cli_main(argv) == 2
    assert "--original-code only applies to --format original" in capsys.readouterr().err
