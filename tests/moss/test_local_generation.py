"""Local generator internals: local KV cache, causality on every backend, static shapes, sampling, offload, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from codectts.conversion import convert_checkpoint
from codectts.modeling.token_selection import ChannelSampling, process_logits
from safetensors.torch import load_file
from transformers import AutoModel
from transformers.generation.logits_process import (
    LogitsProcessorList,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

import codectts  # noqa: F401

GOLDEN = Path(__file__).parents[1] / "fixtures" / "golden" / "moss_tts_local"
GREEDY = {"text_temperature": 0, "audio_temperature": 0}


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("local_gen") / "converted"
    convert_checkpoint(GOLDEN / "model", out)
    return out


@pytest.fixture(scope="module")
def model(converted):
    return AutoModel.from_pretrained(converted).eval()


@pytest.fixture(scope="module")
def eager_model(converted):
    return AutoModel.from_pretrained(converted, attn_implementation="eager").eval()


@pytest.fixture(scope="module")
def golden():
    return load_file(GOLDEN / "outputs_sdpa.safetensors")


def _prompt(golden, name):
    return golden[f"prompt_{name}.input_ids"], golden[f"prompt_{name}.attention_mask"].long()


# ---------------------------------------------------------------- local transformer: cache and causality


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_local_kv_cache_equals_recomputation(model, eager_model, attn):
    m = model if attn == "sdpa" else eager_model
    torch.manual_seed(0)
    batch, positions = 3, m.config.num_channels
    inputs = torch.randn(batch, positions, m.config.local_hidden_size)
    with torch.no_grad():
        full = m.local_transformer(inputs)
        cache = m.local_transformer.new_cache(batch, inputs.dtype, inputs.device)
        stepwise = torch.cat([m.local_transformer(inputs[:, i : i + 1], cache=cache, start=i) for i in range(positions)], 1)
        # a chunk after a cached prefix (query length > 1 with an offset)
        cache2 = m.local_transformer.new_cache(batch, inputs.dtype, inputs.device)
        head = m.local_transformer(inputs[:, :2], cache=cache2, start=0)
        tail = m.local_transformer(inputs[:, 2:], cache=cache2, start=2)
    # fp32 attention over a different number of keys per call: summation order differs (~1e-6 on transformers 5.24)
    torch.testing.assert_close(stepwise, full, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(torch.cat([head, tail], 1), full, atol=1e-5, rtol=1e-5)


def test_local_attention_is_causal_for_eager_and_sdpa(model, eager_model):
    torch.manual_seed(1)
    inputs = torch.randn(2, model.config.num_channels, model.config.local_hidden_size)
    changed = inputs.clone()
    changed[:, -1] += 5.0  # only the last position changes
    with torch.no_grad():
        outs = {name: (m.local_transformer(inputs), m.local_transformer(changed)) for name, m in
                (("sdpa", model), ("eager", eager_model))}
    for name, (a, b) in outs.items():
        assert torch.equal(a[:, :-1], b[:, :-1]), f"{name}: earlier positions must not see later ones"
        assert not torch.allclose(a[:, -1], b[:, -1])
    torch.testing.assert_close(outs["eager"][0], outs["sdpa"][0], atol=1e-6, rtol=1e-5)


def test_eager_equals_sdpa(model, eager_model, golden):
    assert eager_model.config._attn_implementation == "eager"
    assert eager_model.config.text_config._attn_implementation == "eager", "sub-config must follow"
    ids, mask = _prompt(golden, "AC")
    labels = golden["forward_AC.labels"]
    with torch.no_grad():
        a = model(input_ids=ids, attention_mask=mask, labels=labels)
        b = eager_model(input_ids=ids, attention_mask=mask, labels=labels)
    valid = mask.bool()
    torch.testing.assert_close(b.audio_logits[valid], a.audio_logits[valid], atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(b.loss, a.loss, atol=1e-5, rtol=1e-5)
    ids, mask = _prompt(golden, "A")
    with torch.no_grad():
        ga = model.generate(ids, attention_mask=mask, max_new_tokens=12, **GREEDY)
        gb = eager_model.generate(ids, attention_mask=mask, max_new_tokens=12, **GREEDY)
    assert torch.equal(ga, gb)


def test_frame_decoding_with_cache_equals_original_recomputation(model, golden):
    """decode_frame (local KV cache) == the original's loop that reruns the whole local prefix per channel."""
    ids, mask = _prompt(golden, "AC")
    config = model.config
    greedy = ChannelSampling(do_sample=False)
    with torch.no_grad():
        hidden = model.model(input_ids=ids, attention_mask=mask).last_hidden_state[:, -1]
        history = torch.zeros(2, config.n_vq, config.audio_vocab_size + 1, dtype=torch.bool)
        cache = model.local_transformer.new_cache(2, hidden.dtype, hidden.device)
        frame = model.decode_frame(hidden, cache, history, config.n_vq, greedy, greedy)
        seq = [model.local_input_adapter(hidden)]
        expected = []
        for c in range(config.num_channels):
            out = model.local_transformer(torch.stack(seq, 1))[:, -1]
            logits = model.channel_logits(c, out)
            if c > 0:
                logits[:, config.audio_pad_code] = float("-inf")
            token = logits.argmax(-1)
            expected.append(token)
            seq.append(model.local_input_adapter(model.model.embed_tokens[c](token)))
    assert torch.equal(frame, torch.stack(expected, 1))
    # the chosen codes were recorded in the per-codebook history
    for k in range(config.n_vq):
        assert history[torch.arange(2), k, frame[:, k + 1]].all()


# ---------------------------------------------------------------- static shapes / compile


def test_decode_frame_compiles_fullgraph(model, golden):
    """The per-frame local loop has no graph breaks (no data-dependent shapes, no host sync)."""
    ids, mask = _prompt(golden, "A")
    config = model.config
    sampling = ChannelSampling(do_sample=True, temperature=0.9, top_k=5, top_p=0.9, repetition_penalty=1.2)
    greedy = ChannelSampling(do_sample=False)
    torch._dynamo.reset()
    compiled = torch.compile(model.decode_frame, fullgraph=True, backend="eager")
    with torch.no_grad():
        hidden = model.model(input_ids=ids, attention_mask=mask).last_hidden_state[:, -1]
        cache = model.local_transformer.new_cache(1, hidden.dtype, hidden.device)
        history = torch.zeros(1, config.n_vq, config.audio_vocab_size + 1, dtype=torch.bool)
        got = compiled(hidden, cache, history.clone(), config.n_vq, greedy, greedy)
        want = model.decode_frame(hidden, cache, history.clone(), config.n_vq, greedy, greedy)
        sampled = compiled(hidden, cache, history.clone(), config.n_vq, sampling, sampling)
    assert torch.equal(got, want)
    assert sampled.shape == (1, config.num_channels)
    assert (sampled[:, 1:] < config.audio_vocab_size).all()


def test_compiled_static_generation_matches_eager(model, golden):
    """generate() compiles the backbone step and the frame decoder (fullgraph) with a static cache."""
    from transformers import CompileConfig

    ids, mask = _prompt(golden, "AC")
    compile_config = CompileConfig(fullgraph=True, backend="eager", mode=None)
    compile_config._compile_all_devices = True  # transformers only auto-compiles on accelerators
    torch._dynamo.reset()
    model.__dict__.pop("_codectts_compiled", None)
    try:
        with torch.no_grad():
            want = model.generate(ids, attention_mask=mask, max_new_tokens=6, **GREEDY)
            got = model.generate(
                ids, attention_mask=mask, max_new_tokens=6, cache_implementation="static",
                compile_config=compile_config, **GREEDY,
            )
        assert set(model.__dict__.get("_codectts_compiled", {})) == {"decode_frame", "backbone_step"}
    finally:
        model.__dict__.pop("_codectts_compiled", None)
    assert torch.equal(got, want)


def test_static_cache_generation_matches_dynamic(model, golden):
    ids, mask = _prompt(golden, "AC")
    with torch.no_grad():
        dynamic = model.generate(ids, attention_mask=mask, max_new_tokens=10, **GREEDY)
        static = model.generate(ids, attention_mask=mask, max_new_tokens=10, cache_implementation="static", **GREEDY)
    assert torch.equal(dynamic, static)


# ---------------------------------------------------------------- sampling


def test_sampling_warpers_match_transformers():
    torch.manual_seed(3)
    scores = torch.randn(4, 50)
    scores[0, :3] = 2.5  # ties at the top-k boundary are kept
    history_ids = torch.randint(0, 50, (4, 7))
    history = torch.zeros(4, 50, dtype=torch.bool).scatter_(1, history_ids, True)
    sampling = ChannelSampling(do_sample=True, temperature=0.7, top_k=2, top_p=0.8, repetition_penalty=1.3)
    ours = process_logits(scores, sampling, history)
    reference = LogitsProcessorList(
        [RepetitionPenaltyLogitsProcessor(1.3), TemperatureLogitsWarper(0.7), TopKLogitsWarper(2), TopPLogitsWarper(0.8)]
    )(history_ids, scores.clone())
    assert torch.equal(torch.isinf(ours), torch.isinf(reference))
    finite = torch.isfinite(reference)
    torch.testing.assert_close(ours[finite], reference[finite])
    tied = torch.tensor([[1.0, 3.0, 3.0, 3.0, 0.5]])
    kept = process_logits(tied, ChannelSampling(do_sample=True, top_k=2))
    assert torch.isfinite(kept).tolist() == [[False, True, True, True, False]], "top-k keeps ties with the k-th"


def test_sampling_is_seeded_and_respects_settings(model, golden):
    ids, mask = _prompt(golden, "AC")
    kwargs = dict(attention_mask=mask, max_new_tokens=6, audio_top_k=3, audio_temperature=1.0, text_top_k=2)
    with torch.no_grad():
        torch.manual_seed(7)
        a = model.generate(ids, **kwargs)
        torch.manual_seed(7)
        b = model.generate(ids, **kwargs)
        default = model.generate(ids, attention_mask=mask, max_new_tokens=3)  # released preset
    assert torch.equal(a, b)
    config = model.config
    audio = a[:, ids.shape[1] :, 1:]
    live = a[:, ids.shape[1] :, 0] != config.audio_end_token_id
    assert (audio[live] < config.audio_vocab_size).all(), "the pad code is never sampled"
    assert default.shape[1] <= ids.shape[1] + 3
    gc = model.generation_config
    assert (gc.audio_temperature, gc.audio_top_p, gc.audio_top_k, gc.audio_repetition_penalty) == (1.0, 0.95, 50, 1.1)
    assert (gc.temperature, gc.top_p, gc.top_k, gc.do_sample) == (1.5, 1.0, 50, True)
    assert not hasattr(gc, "text_temperature"), "the original names are aliases, never stored"


def test_do_sample_false_is_greedy(model, golden):
    ids, mask = _prompt(golden, "A")
    with torch.no_grad():
        a = model.generate(ids, attention_mask=mask, max_new_tokens=5, do_sample=False)
        b = model.generate(ids, attention_mask=mask, max_new_tokens=5, **GREEDY)
    assert torch.equal(a, b)


def test_return_dict_and_batch_consistency(model, golden):
    ids, mask = _prompt(golden, "AC")
    with torch.no_grad():
        out = model.generate(ids, attention_mask=mask, max_new_tokens=8, return_dict_in_generate=True, **GREEDY)
        single = model.generate(ids[1:], attention_mask=mask[1:], max_new_tokens=8, **GREEDY)
    assert out.sequences.shape[0] == 2 and out.n_vq_for_inference == model.config.n_vq
    assert torch.equal(out.sequences[1, : single.shape[1]], single[0])


# ---------------------------------------------------------------- offload


def _tiny_random_model():
    """A small random model whose size is spread over many modules (the golden one is one big embedding)."""
    from codectts.configuration.moss.local import CodecTTSLocalConfig
    from codectts.modeling.moss.local import CodecTTSLocalForConditionalGeneration

    config = CodecTTSLocalConfig(
        text_config=dict(
            vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
            num_key_value_heads=2, head_dim=16,
        ),
        local_num_layers=2, local_hidden_size=32, local_intermediate_size=64, adapter_intermediate_size=48, n_vq=4,
        audio_vocab_size=32, audio_pad_code=32, pad_token_id=0, audio_start_token_id=1, audio_end_token_id=2,
        im_start_token_id=3, im_end_token_id=4, audio_user_slot_token_id=5, audio_assistant_gen_slot_token_id=6,
        audio_assistant_delay_slot_token_id=7,
    )
    torch.manual_seed(0)
    return CodecTTSLocalForConditionalGeneration(config).eval()


def test_offload_matches_single_device(tmp_path):
    pytest.importorskip("accelerate")
    model = _tiny_random_model()
    model.save_pretrained(tmp_path / "tiny")
    size = sum(p.numel() * p.element_size() for p in model.parameters())
    offloaded = AutoModel.from_pretrained(
        tmp_path / "tiny",
        device_map="auto",
        max_memory={"cpu": size // 2},
        offload_folder=str(tmp_path / "offload"),
    ).eval()
    placements = set(offloaded.hf_device_map.values())
    assert placements == {"cpu", "disk"}, offloaded.hf_device_map
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(8, 32, (2, 9, 5), generator=generator)
    ids[..., 0] = torch.randint(8, 512, (2, 9), generator=generator)
    ids[:, -1, 0], ids[:, -1, 1:] = 1, 32  # the <|audio_start|> row
    mask = torch.ones(2, 9, dtype=torch.long)
    mask[1, :3] = 0
    with torch.no_grad():
        want = model.generate(ids, attention_mask=mask, max_new_tokens=6, **GREEDY)
        got = offloaded.generate(ids, attention_mask=mask, max_new_tokens=6, **GREEDY)
    assert want.shape[1] > ids.shape[1]
    assert torch.equal(got, want)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "make, kwargs, error, message",
    [
        (lambda ids: ids[..., :-1], {}, ValueError, r"shape \[batch, seq_len, 1 \+ n_vq = {channels}\]"),
        (lambda ids: ids[0], {}, ValueError, "shape"),
        (lambda ids: ids.float(), {}, TypeError, "integer token ids"),
        (lambda ids: ids.index_fill(2, torch.tensor([2]), 10**6), {}, ValueError, r"audio codes outside \[0, {pad}\]"),
        (lambda ids: ids.index_fill(2, torch.tensor([0]), 10**7), {}, ValueError, "text ids outside"),
        (lambda ids: ids, {"n_vq_for_inference": 0}, ValueError, r"n_vq_for_inference must be in \[1, n_vq = {n_vq}\]"),
        (lambda ids: ids, {"n_vq_for_inference": 10**6}, ValueError, "n_vq_for_inference"),
        (lambda ids: ids, {"temperature": 0.5, "text_temperature": 0.7}, ValueError, "disagree"),
        (lambda ids: ids, {"min_p": 0.1}, ValueError, "MinPLogitsWarper is not supported"),
        (lambda ids: ids, {"audio_repetition_penalty_scope": "reference"}, ValueError, "must be 'sequence'"),
        (lambda ids: ids, {"num_beams": 2}, ValueError, "beam search"),
        (lambda ids: ids, {"attention_mask": torch.ones(1, 3)}, ValueError, "attention_mask must have shape"),
        (lambda ids: ids, {"audio_top_p": 1.5}, ValueError, "top_p must be in"),
        (lambda ids: ids, {"max_new_tokens": 0}, ValueError, "max_new_tokens"),
        (lambda ids: ids[:, :0], {}, ValueError, "no rows"),
    ],
)
def test_generate_rejects_bad_input(model, golden, make, kwargs, error, message):
    ids, _ = _prompt(golden, "A")
    config = model.config
    message = message.format(channels=config.num_channels, pad=config.audio_pad_code, n_vq=config.n_vq)
    with pytest.raises(error, match=message):
        model.generate(make(ids), max_new_tokens=kwargs.pop("max_new_tokens", 2), **kwargs)


def test_forward_rejects_bad_labels(model, golden):
    ids, mask = _prompt(golden, "A")
    with pytest.raises(ValueError, match="labels rows"):
        model(input_ids=ids, labels=torch.full((1, 3, 5), -100))
    bad = torch.full_like(ids, -100)
    bad[0, 0, 1] = -5
    with pytest.raises(ValueError, match="audio codes outside"):
        model(input_ids=ids, labels=bad)
    with pytest.raises(ValueError, match="exactly one of input_ids"):
        model()
