"""MOSS-TTS-Local 1.0 parity through the converter (golden `sdpa` outputs = the intended causal behaviour)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from codectts.configuration.moss.local import CodecTTSLocalConfig
from codectts.conversion import convert_checkpoint, detect_checkpoint_kind
from codectts.conversion.io import CheckpointMismatchError, read_json
from codectts.conversion.moss.local import load_original_local, write_converted_local
from codectts.modeling.moss.local import CodecTTSLocalForConditionalGeneration
from safetensors.torch import load_file, save_file

import codectts  # noqa: F401  (registers the Auto classes)

GOLDEN = Path(__file__).parents[1] / "fixtures" / "golden" / "moss_tts_local"
GREEDY = {"text_temperature": 0, "audio_temperature": 0}
TOPK1 = {
    "text_temperature": 1.0,
    "text_top_k": 1,
    "text_top_p": 1.0,
    "audio_temperature": 0.8,
    "audio_top_k": 1,
    "audio_top_p": 0.9,
    "audio_repetition_penalty": 1.3,
}


@pytest.fixture(scope="module")
def golden():
    return load_file(GOLDEN / "outputs_sdpa.safetensors")


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("local") / "converted"
    convert_checkpoint(GOLDEN / "model", out)
    return out


@pytest.fixture(scope="module")
def model(converted):
    from transformers import AutoModel

    return AutoModel.from_pretrained(converted).eval()


def assert_close(ours: torch.Tensor, ref: torch.Tensor, what: str, rel: float = 1e-5):
    """float32 parity: absolute error within ``rel`` of the reference's scale."""
    assert ours.shape == ref.shape, f"{what}: shape {tuple(ours.shape)} != {tuple(ref.shape)}"
    scale = max(1.0, ref.abs().max().item())
    err = (ours.float() - ref.float()).abs().max().item()
    assert err <= rel * scale, f"{what}: max abs error {err:.3g} > {rel * scale:.3g}"


def prompt(golden, name):
    return golden[f"prompt_{name}.input_ids"], golden[f"prompt_{name}.attention_mask"].long()


def expected_rows(golden, key: str, config, prompt_len: int, start: int, n_vq_for_inference: int | None = None):
    """The golden ``ids[start:]`` mapped to our output contract (documented deviations applied explicitly)."""
    rows = golden[key].clone()
    # Deviation 1: the <|audio_end|> row carries the pad code, not the original's freshly sampled junk codes.
    rows[rows[:, 0] == config.audio_end_token_id, 1:] = config.audio_pad_code
    # Deviation 2: codebooks not generated (n_vq_for_inference < n_vq) are the pad code, not code 0.
    if n_vq_for_inference is not None:
        generated = torch.arange(len(rows)) >= prompt_len - start
        rows[generated, 1 + n_vq_for_inference :] = config.audio_pad_code
    return rows


def check_generation(model, golden, name: str, prompt_name: str, **kwargs):
    ids, mask = prompt(golden, prompt_name)
    with torch.no_grad():
        sequences = model.generate(ids, attention_mask=mask, **kwargs)
    config = model.config
    assert sequences.shape[0] == ids.shape[0] and sequences.shape[2] == config.num_channels
    assert torch.equal(sequences[:, : ids.shape[1]], ids), "the prompt must be returned unchanged"
    for b in range(ids.shape[0]):
        # The original returned (start_length, ids[start:]) with start = last <|audio_start|> row.
        text = sequences[b, :, 0]
        start = int((text == config.audio_start_token_id).nonzero().max())
        start_length = ids.shape[1] - start - 1
        assert start_length == int(golden[f"gen_{name}.b{b}.start_length"])
        want = expected_rows(
            golden, f"gen_{name}.b{b}.ids", config, ids.shape[1], start, kwargs.get("n_vq_for_inference")
        )
        got = sequences[b, start:]
        assert got.shape == want.shape, f"{name} b{b}: {tuple(got.shape)} != {tuple(want.shape)}"
        mismatch = (got != want).nonzero()
        assert mismatch.numel() == 0, f"{name} b{b}: first mismatches (row, channel) {mismatch[:5].tolist()}"
    return sequences


# ---------------------------------------------------------------- config / converter


def test_detect_and_config_from_original():
    original = read_json(GOLDEN / "model" / "config.json")
    assert original["model_type"] == "moss_tts_delay"
    assert detect_checkpoint_kind(original) == "local"
    config = CodecTTSLocalConfig.from_original_config(original)
    assert (config.local_num_layers, config.local_hidden_size, config.local_intermediate_size) == (
        original["local_num_layers"], original["local_hidden_size"], original["local_ffn_hidden_size"],
    )  # fmt: skip
    assert config.adapter_intermediate_size == original["additional_mlp_ffn_hidden_size"]
    assert config.n_vq == original["n_vq"] and config.audio_pad_code == original["audio_vocab_size"]
    text = original["language_config"]
    assert config.text_config.num_hidden_layers == text["num_hidden_layers"] and config.vocab_size == text["vocab_size"]
    assert config.audio_end_token_id == original["audio_end_token_id"]


def test_converted_folder_round_trip(converted, model, tmp_path):
    config = read_json(converted / "config.json")
    assert config["model_type"] == "codectts_local"
    assert (converted / "generation_config.json").is_file()
    state = load_file(converted / "model.safetensors")
    assert "model.embed_tokens.0.weight" in state
    assert not any("language_model.embed_tokens" in k for k in state), "the unused backbone embedding is dropped"
    original = load_file(GOLDEN / "model" / "model.safetensors")
    assert torch.equal(state["model.embed_tokens.0.weight"], original["model.embedding_list.0.weight"])
    assert torch.equal(state["local_input_adapter.gate_proj.weight"], original["speech_embedding_to_local_mlp.gate_proj.weight"])
    # save_pretrained / from_pretrained keeps weights and generation defaults
    model.save_pretrained(tmp_path / "again")
    again = CodecTTSLocalForConditionalGeneration.from_pretrained(tmp_path / "again")
    for key, value in model.state_dict().items():
        assert torch.equal(value, again.state_dict()[key]), key
    assert again.generation_config.audio_repetition_penalty == model.generation_config.audio_repetition_penalty
    assert again.generation_config.eos_token_id == model.config.audio_end_token_id


def test_in_memory_conversion_matches_folder(model, golden):
    in_memory = load_original_local(GOLDEN / "model")
    ids, mask = prompt(golden, "AC")
    with torch.no_grad():
        a = in_memory(input_ids=ids, attention_mask=mask).logits
        b = model(input_ids=ids, attention_mask=mask).logits
    assert torch.equal(a, b)


def test_converter_writes_sharded_output(model, tmp_path):
    size = sum(t.numel() * t.element_size() for t in load_file(GOLDEN / "model" / "model.safetensors").values())
    out = tmp_path / "sharded"
    out.mkdir()
    write_converted_local(GOLDEN / "model", out, max_shard_bytes=size // 3)
    index = read_json(out / "model.safetensors.index.json")
    assert len(set(index["weight_map"].values())) >= 3 and not (out / "model.safetensors").exists()
    sharded = CodecTTSLocalForConditionalGeneration.from_pretrained(out)
    for key, value in model.state_dict().items():
        assert torch.equal(value, sharded.state_dict()[key]), key


def _copy_original(tmp_path: Path, edit) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    (src / "config.json").write_text((GOLDEN / "model" / "config.json").read_text())
    state = load_file(GOLDEN / "model" / "model.safetensors")
    edit(state)
    save_file(state, str(src / "model.safetensors"))
    return src


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda s: s.pop("lm_heads.3.weight"), "missing tensors .*lm_heads.3.weight"),
        (lambda s: s.__setitem__("extra.weight", torch.zeros(2)), "unexpected tensors .*extra.weight"),
        (
            lambda s: s.__setitem__("local_transformer.norm.weight", torch.zeros(len(s["local_transformer.norm.weight"]) + 1)),
            r"wrong shape .*local_transformer.norm.weight: expected \(\d+,\), found \(\d+,\)",
        ),
    ],
)
def test_converter_names_bad_tensors(tmp_path, edit, message):
    src = _copy_original(tmp_path, edit)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(CheckpointMismatchError, match=message):
        write_converted_local(src, out)


def test_converter_refuses_converted_folder(converted, tmp_path):
    with pytest.raises(ValueError, match="already in codectts format"):
        convert_checkpoint(converted, tmp_path / "x")


# ---------------------------------------------------------------- forward parity


def test_forward_labels_parity(model, golden):
    ids, mask = prompt(golden, "AC")
    labels = golden["forward_AC.labels"]
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, labels=labels)
    valid = mask.bool()
    assert_close(out.loss, golden["forward_AC.loss"], "loss")
    assert_close(out.channel_losses, golden["forward_AC.loss_all"], "channel losses")
    assert out.audio_logits.shape == golden["forward_AC.audio_logits"].shape
    assert_close(out.audio_logits[valid], golden["forward_AC.audio_logits"][valid], "audio logits")
    assert_close(out.backbone_last_hidden_state[valid], golden["forward_AC.backbone_last_hidden"][valid], "latents")
    logits = out.logits
    assert logits.shape == (*ids.shape[:2], model.config.vocab_size)
    cols = golden["forward_AC.logits0.cols"]
    assert_close(logits[..., cols][valid], golden["forward_AC.logits0.at_cols"][valid], "text logits (columns)")
    assert_close(
        logits.double().logsumexp(-1).float()[valid], golden["forward_AC.logits0.logsumexp"][valid], "logsumexp"
    )
    top = logits.topk(16, dim=-1)
    assert_close(top.values[valid], golden["forward_AC.logits0.topk_values"][valid], "top-16 values")


def test_forward_weighted_loss(model, golden):
    ids, mask = prompt(golden, "AC")
    weights = golden["forward_AC_weighted.channelwise_loss_weight"]
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, labels=golden["forward_AC.labels"], channelwise_loss_weight=weights)
    assert_close(out.loss, golden["forward_AC_weighted.loss"], "weighted loss")
    with pytest.raises(ValueError, match="channelwise_loss_weight needs 5 entries"):
        model(input_ids=ids, attention_mask=mask, labels=golden["forward_AC.labels"], channelwise_loss_weight=[1, 2])


def test_forward_hidden_states_and_plain_forward(model, golden):
    ids, _ = prompt(golden, "B")
    with torch.no_grad():
        out = model(input_ids=ids, output_hidden_states=True)
        last = model(input_ids=ids, logits_to_keep=1)
    assert len(out.hidden_states) == 3
    for i in range(3):
        assert_close(out.hidden_states[i], golden[f"forward_B.hidden_states.{i}"], f"hidden state {i}")
    # Without labels: latents + next-row text logits (local position 0 only), no audio logits.
    assert out.audio_logits is None and out.loss is None
    assert out.logits.shape == (1, ids.shape[1], model.config.vocab_size)
    assert_close(last.logits[:, -1], out.logits[:, -1], "logits_to_keep=1")
    # The text logits of the plain forward are those of the labels path (position 0 sees no teacher forcing).
    labels = torch.full_like(ids, -100)
    with torch.no_grad():
        forced = model(input_ids=ids, labels=labels)
    assert torch.allclose(forced.logits, out.logits, atol=1e-5)


# ---------------------------------------------------------------- generation parity


@pytest.mark.parametrize(
    "name, prompt_name, max_new_tokens",
    [("A.max1", "A", 1), ("A.max3", "A", 3), ("A.max8", "A", 8), ("A.max40", "A", 40), ("B.max1", "B", 1),
     ("B.max5", "B", 5), ("B.max40", "B", 40), ("C.max40", "C", 40), ("AC.max40", "AC", 40)],
)
def test_greedy_generation_parity(model, golden, name, prompt_name, max_new_tokens):
    check_generation(model, golden, name, prompt_name, max_new_tokens=max_new_tokens, **GREEDY)


def test_top_k1_sampling_parity(model, golden):
    check_generation(model, golden, "A_topk1.max40", "A", max_new_tokens=40, **TOPK1)


def test_n_vq_for_inference_parity(model, golden):
    sequences = check_generation(model, golden, "A_nvq2.max10", "A", max_new_tokens=10, n_vq_for_inference=2, **GREEDY)
    prompt_len = golden["prompt_A.input_ids"].shape[1]
    assert (sequences[:, prompt_len:, 3:] == model.config.audio_pad_code).all()


@pytest.mark.parametrize("name, prompt_name, n_vq", [("A.max40", "A", None), ("AC.max40", "AC", None),
                                                      ("A_nvq2.max10", "A", 2), ("B.max40", "B", None)])
def test_step_hidden_states_parity(model, golden, name, prompt_name, n_vq):
    """Per-step backbone latents and every local call's output, recomputed by a teacher-forced forward.

    The local stack is causal and position-free, so position ``c`` of the teacher-forced pass equals the last
    position of the original's ``c``-th local call of that step.
    """
    ids, mask = prompt(golden, prompt_name)
    steps_hidden = golden[f"gen_{name}.step_backbone_last_hidden"]
    calls_hidden = golden[f"gen_{name}.local_calls_last_hidden"]
    steps = steps_hidden.shape[1]
    calls = calls_hidden.shape[1] // steps
    assert calls == 1 + (n_vq or model.config.n_vq)
    end = model.config.audio_end_token_id
    for b in range(ids.shape[0]):
        start_length = int(golden[f"gen_{name}.b{b}.start_length"])
        generated = golden[f"gen_{name}.b{b}.ids"][1 + start_length :][:steps]
        full = torch.cat([ids[b], generated])[None]
        full_mask = torch.cat([mask[b], torch.ones(len(generated), dtype=torch.long)])[None]
        labels = full[:, 1:].clone()
        with torch.no_grad():
            out = model(input_ids=full[:, :-1], attention_mask=full_mask[:, :-1], labels=labels, n_vq_for_inference=n_vq)
        # steps up to (and including) the one that emitted <|audio_end|>; later rows are filler
        ended = (generated[:, 0] == end).nonzero()
        live = int(ended[0]) + 1 if len(ended) else steps
        rows = slice(ids.shape[1] - 1, ids.shape[1] - 1 + live)
        assert_close(out.backbone_last_hidden_state[0, rows], steps_hidden[b, :live], f"{name} b{b} step latents")
        local = out.local_last_hidden_state[0, rows, :calls].reshape(-1, calls_hidden.shape[-1])
        assert_close(local, calls_hidden[b, : live * calls], f"{name} b{b} local calls")
