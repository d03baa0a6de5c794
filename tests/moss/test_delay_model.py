"""Delay generator: conversion, forward/loss parity with the original (golden fixtures), round trips, bad input."""

import json
import shutil
from pathlib import Path

import codectts  # noqa: F401  (registers the Auto classes)
import pytest
import torch
from codectts.configuration.moss.delay import CodecTTSDelayConfig
from codectts.conversion import CheckpointMismatchError, convert_checkpoint
from codectts.conversion.moss.delay import write_converted_delay
from codectts.modeling.moss.delay import CodecTTSDelayForConditionalGeneration
from safetensors.torch import load_file, save_file

GOLDEN = Path(__file__).parents[1] / "fixtures" / "golden" / "moss_tts_delay"
ATOL = 1e-4  # float32 logits of O(10); reference eager vs sdpa differ by <= 5e-6 on valid rows


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    out = tmp_path_factory.mktemp("delay") / "converted"
    convert_checkpoint(GOLDEN / "model", out)
    return out


@pytest.fixture(scope="module", params=["eager", "sdpa"])
def model_and_golden(request, converted):
    model = CodecTTSDelayForConditionalGeneration.from_pretrained(converted, attn_implementation=request.param)
    return model.eval(), load_file(GOLDEN / f"outputs_{request.param}.safetensors")


def _assert_text_logits(logits, golden, prefix, valid):
    cols = golden[f"{prefix}.logits0.cols"]
    torch.testing.assert_close(logits[..., cols][valid], golden[f"{prefix}.logits0.at_cols"][valid], atol=ATOL, rtol=0)
    torch.testing.assert_close(
        logits.logsumexp(-1)[valid], golden[f"{prefix}.logits0.logsumexp"][valid], atol=ATOL, rtol=0
    )
    values, _ = logits.topk(16, dim=-1)
    torch.testing.assert_close(values[valid], golden[f"{prefix}.logits0.topk_values"][valid], atol=ATOL, rtol=0)


def _assert_audio_logits(audio, expected):
    assert torch.equal(audio.isneginf(), expected.isneginf())  # pad code masked exactly where the original masks
    finite = ~expected.isneginf()
    torch.testing.assert_close(audio[finite], expected[finite], atol=ATOL, rtol=0)


def test_converted_folder_loads_through_auto_classes(converted):
    from transformers import AutoConfig, AutoModel

    # compared by name: pytest may import the repository root a second time under another package name
    config = AutoConfig.from_pretrained(converted, attn_implementation="eager")
    assert type(config).__name__ == "CodecTTSDelayConfig"
    assert config.text_config._attn_implementation == "eager"  # reaches the backbone (the original loses it)
    model = AutoModel.from_pretrained(converted, attn_implementation="eager", dtype=torch.bfloat16)
    assert type(model).__name__ == "CodecTTSDelayForConditionalGeneration"
    assert model.model.config._attn_implementation == "eager"
    assert model.dtype == torch.bfloat16 and model.audio_lm_head.weight.dtype == torch.bfloat16
    original = json.loads((GOLDEN / "model" / "config.json").read_text())
    assert config.n_vq == original["n_vq"] and config.audio_pad_code == original["audio_pad_code"]
    assert model.generation_config.eos_token_id == original["im_end_token_id"]


def test_forward_logits_and_losses_match_reference(model_and_golden):
    model, golden = model_and_golden
    ids, mask = golden["prompt_AC.input_ids"], golden["prompt_AC.attention_mask"].bool()
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, labels=golden["forward_AC.labels"], output_hidden_states=True)
    _assert_text_logits(out.logits, golden, "forward_AC", mask)
    _assert_audio_logits(out.audio_logits[mask], golden["forward_AC.audio_logits"][mask])
    torch.testing.assert_close(
        out.hidden_states[-1][mask], golden["forward_AC.last_hidden_state"][mask], atol=ATOL, rtol=0
    )
    torch.testing.assert_close(out.loss, golden["forward_AC.loss"], atol=1e-5, rtol=1e-6)
    torch.testing.assert_close(out.channel_losses, golden["forward_AC.channel_losses"], atol=1e-5, rtol=1e-6)
    sums, counts = golden["forward_AC.all_sum_losses"], golden["forward_AC.all_token_nums"]
    torch.testing.assert_close(out.sample_losses, sums.sum(1) / counts.sum(1), atol=1e-5, rtol=1e-6)

    weights = golden["forward_AC_weighted.channelwise_loss_weight"]
    with torch.no_grad():
        weighted = model(
            input_ids=ids, attention_mask=mask, labels=golden["forward_AC.labels"], channelwise_loss_weight=weights
        )
    torch.testing.assert_close(weighted.loss, golden["forward_AC_weighted.loss"], atol=1e-5, rtol=1e-6)
    torch.testing.assert_close(
        weighted.sample_losses, golden["forward_AC_weighted.sample_losses"], atol=1e-5, rtol=1e-6
    )
    torch.testing.assert_close(
        weighted.channel_losses, golden["forward_AC_weighted.channel_losses"], atol=1e-5, rtol=1e-6
    )


def test_forward_without_mask_hidden_states_and_hidden_out_layers(model_and_golden):
    model, golden = model_and_golden
    ids = golden["prompt_B.input_ids"]
    valid = torch.ones(ids.shape[:2], dtype=torch.bool)
    with torch.no_grad():
        out = model(input_ids=ids, output_hidden_states=True)
        per_layer = model(input_ids=ids, hidden_out_layers=[-1, -2, -1, -2, -3])
    _assert_text_logits(out.logits, golden, "forward_B", valid)
    _assert_audio_logits(out.audio_logits, golden["forward_B.audio_logits"])
    assert len(out.hidden_states) == 3
    for i, hidden in enumerate(out.hidden_states):
        torch.testing.assert_close(hidden, golden[f"forward_B.hidden_states.{i}"], atol=ATOL, rtol=0)
    _assert_text_logits(per_layer.logits, golden, "forward_B_hidden_out_layers", valid)
    _assert_audio_logits(per_layer.audio_logits, golden["forward_B_hidden_out_layers.audio_logits"])


def test_logits_to_keep_computes_only_the_last_rows(model_and_golden):
    model, golden = model_and_golden
    ids = golden["prompt_B.input_ids"]
    with torch.no_grad():
        full = model(input_ids=ids)
        last = model(input_ids=ids, logits_to_keep=1)
    assert last.logits.shape == (1, 1, model.config.vocab_size)
    assert last.audio_logits.shape == (1, 1, model.config.n_vq, model.config.audio_vocab_size + 1)
    torch.testing.assert_close(last.logits, full.logits[:, -1:])
    torch.testing.assert_close(last.audio_logits, full.audio_logits[:, -1:])


def test_save_and_reload_round_trip(converted, tmp_path):
    model = CodecTTSDelayForConditionalGeneration.from_pretrained(converted)
    model.save_pretrained(tmp_path)
    again = CodecTTSDelayForConditionalGeneration.from_pretrained(tmp_path)
    for (name, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert again.generation_config.audio_temperature == model.generation_config.audio_temperature


def test_sharded_original_checkpoint_converts_identically(tmp_path):
    src = tmp_path / "sharded"
    src.mkdir()
    shutil.copy(GOLDEN / "model" / "config.json", src / "config.json")
    state = load_file(GOLDEN / "model" / "model.safetensors")
    keys = sorted(state)
    shards = {"model-00001-of-00002.safetensors": keys[::2], "model-00002-of-00002.safetensors": keys[1::2]}
    for name, shard_keys in shards.items():
        save_file({k: state[k] for k in shard_keys}, str(src / name))
    index = {"weight_map": {k: name for name, ks in shards.items() for k in ks}}
    (src / "model.safetensors.index.json").write_text(json.dumps(index))
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    write_converted_delay(GOLDEN / "model", a)
    write_converted_delay(src, b, max_shard_bytes=4_000_000)  # also writes our own output sharded
    assert (b / "model.safetensors.index.json").is_file()
    ma = CodecTTSDelayForConditionalGeneration.from_pretrained(a)
    mb = CodecTTSDelayForConditionalGeneration.from_pretrained(b)
    for (name, x), (_, y) in zip(ma.state_dict().items(), mb.state_dict().items(), strict=True):
        assert torch.equal(x, y), name


def _broken_copy(tmp_path, edit):
    src = tmp_path / "broken"
    src.mkdir()
    shutil.copy(GOLDEN / "model" / "config.json", src / "config.json")
    state = load_file(GOLDEN / "model" / "model.safetensors")
    edit(state)
    save_file(state, str(src / "model.safetensors"))
    return src


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda s: s.pop("emb_ext.2.weight"), "missing tensors.*emb_ext.2.weight"),
        (lambda s: s.__setitem__("lm_heads.3.weight", s["lm_heads.3.weight"][1:].clone()), "wrong shape.*lm_heads.3.weight"),
        (lambda s: s.__setitem__("lm_heads.999.weight", s["lm_heads.1.weight"].clone()), "unexpected tensors.*lm_heads.999"),
    ],
)
def test_converter_names_bad_tensors(tmp_path, edit, message):
    src = _broken_copy(tmp_path, edit)
    with pytest.raises(CheckpointMismatchError, match=message):
        write_converted_delay(src, tmp_path)
    with pytest.raises(CheckpointMismatchError):
        convert_checkpoint(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_config_from_original_rejects_local_configs():
    original = json.loads((GOLDEN / "model" / "config.json").read_text())
    with pytest.raises(ValueError, match="Local"):
        CodecTTSDelayConfig.from_original_config({**original, "local_num_layers": 4})
    with pytest.raises(ValueError, match="language_config"):
        CodecTTSDelayConfig.from_original_config({"n_vq": 4})


def test_bad_inputs_raise_specific_errors(converted):
    model = CodecTTSDelayForConditionalGeneration.from_pretrained(converted)
    golden = load_file(GOLDEN / "outputs_eager.safetensors")
    ids = golden["prompt_B.input_ids"]
    width = rf"\[batch, rows, {model.config.num_channels}\]"
    with pytest.raises(ValueError, match=width):
        model(input_ids=ids[..., :-1])
    with pytest.raises(ValueError, match=width):
        model(input_ids=ids[0])
    too_big = ids.clone()
    too_big[0, 3, 2] = model.config.audio_vocab_size + 1
    with pytest.raises(ValueError, match="audio codes must be in"):
        model(input_ids=too_big)
    negative = ids.clone()
    negative[0, 0, 0] = -1
    with pytest.raises(ValueError, match="text tokens"):
        model(input_ids=negative)
    with pytest.raises(TypeError, match="integer"):
        model(input_ids=ids.float())
    with pytest.raises(ValueError, match="attention_mask has shape"):
        model(input_ids=ids, attention_mask=torch.ones(1, ids.shape[1] + 2))
    with pytest.raises(ValueError, match="labels must have shape"):
        model(input_ids=ids, labels=ids[:, :-1])
    labels = torch.full_like(ids, -100)
    labels[0, 5, 1] = model.config.audio_pad_code
    with pytest.raises(ValueError, match="pad code"):
        model(input_ids=ids, labels=labels)
    with pytest.raises(ValueError, match="channelwise_loss_weight"):
        model(input_ids=ids, labels=golden["forward_AC.labels"][:1, : ids.shape[1]], channelwise_loss_weight=[1, 2])
    with pytest.raises(ValueError, match="exactly one"):
        model()
