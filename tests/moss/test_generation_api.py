"""One generate() API for both generator families: the same settings, aliases, greedy rules, presets and errors."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from codectts.modeling.moss.generation_settings import AUDIO_SAMPLING_KEYS, TEXT_SAMPLING_ALIASES
from codectts.processing.moss.processor import CodecTTSProcessor
from transformers import AutoModel, GenerationConfig

FAMILIES = ["delay", "local"]
STEPS = 8
# every setting of the shared API, with non-default values
ALL_SETTINGS = dict(
    do_sample=True, temperature=0.8, top_k=20, top_p=0.9, audio_do_sample=True, audio_temperature=0.9,
    audio_top_k=10, audio_top_p=0.8, audio_repetition_penalty=1.2, audio_repetition_penalty_scope="sequence",
)  # fmt: skip
SAMPLING_KEYS = {"do_sample", "temperature", "top_k", "top_p", *AUDIO_SAMPLING_KEYS}


@pytest.fixture(scope="module", params=FAMILIES)
def case(request, two_prompt_batch):
    """(model, inputs, bias): a two-prompt batch; the bias makes random text heads open audio blocks."""
    return two_prompt_batch(request.param)


def generate(case, seed=None, model=None, **settings):
    model_, inputs, bias = case
    if seed is not None:
        torch.manual_seed(seed)
    with torch.no_grad():
        return (model or model_).generate(**inputs, max_new_tokens=STEPS, sequence_bias=bias, **settings)


def audio_codes(case, sequences):
    model, inputs, _ = case
    codes = sequences[:, inputs["input_ids"].shape[1] :, 1:]
    return codes[codes != model.config.audio_pad_code]


def test_every_shared_setting_is_accepted(case):
    model, inputs, _ = case
    out = generate(case, seed=0, **ALL_SETTINGS)
    assert out.shape[0] == 2 and inputs["input_ids"].shape[1] < out.shape[1] <= inputs["input_ids"].shape[1] + STEPS
    codes = audio_codes(case, out)
    assert codes.numel() > 0, "the prompt/bias must exercise the audio channels"
    assert ((codes >= 0) & (codes < model.config.audio_vocab_size)).all()


def test_original_names_are_aliases(case):
    standard = generate(case, seed=3, do_sample=True, temperature=0.8, top_k=20, top_p=0.9)
    aliased = generate(case, seed=3, do_sample=True, text_temperature=0.8, text_top_k=20, text_top_p=0.9)
    both = generate(case, seed=3, do_sample=True, temperature=0.8, text_temperature=0.8, top_k=20, text_top_p=0.9)
    assert torch.equal(standard, aliased) and torch.equal(standard, both)
    # an alias stored on a generation config (an older generation_config.json) works the same
    config = copy.deepcopy(case[0].generation_config)
    config.text_temperature, config.top_k, config.top_p, config.temperature = 0.8, 20, 0.9, None
    assert torch.equal(generate(case, seed=3, generation_config=config), standard)


@pytest.mark.parametrize(
    "settings",
    [
        dict(temperature=0.7, text_temperature=0.8),
        dict(top_k=5, text_top_k=6),
        dict(top_p=0.5, text_top_p=0.6),
        dict(generation_config=GenerationConfig(do_sample=True, top_k=5, text_top_k=6)),
    ],
)
def test_alias_and_standard_name_disagreeing_raise(case, settings):
    with pytest.raises(ValueError, match="disagree"):
        generate(case, **settings)


def test_greedy_is_deterministic_and_equals_zero_temperatures(case):
    greedy = generate(case, seed=0, do_sample=False)
    assert torch.equal(generate(case, seed=1, do_sample=False), greedy)
    assert audio_codes(case, greedy).numel() > 0
    # the original names: temperature <= 0 means greedy for that group (the preset has do_sample=True)
    assert case[0].generation_config.do_sample is True
    assert torch.equal(generate(case, seed=2, text_temperature=0, audio_temperature=0), greedy)
    assert torch.equal(generate(case, seed=2, text_temperature=-1.0, audio_do_sample=False), greedy)
    assert not torch.equal(generate(case, seed=2), greedy)  # the preset samples


def test_one_greedy_group(case):
    """`text_temperature=0` leaves the audio channels sampling; `audio_temperature=0` the text channel."""
    text_greedy = generate(case, seed=5, do_sample=False, audio_do_sample=True)
    assert torch.equal(generate(case, seed=5, text_temperature=0), text_greedy)
    assert torch.equal(generate(case, seed=5, do_sample=True, text_temperature=0), text_greedy)
    audio_greedy = generate(case, seed=5, do_sample=True, audio_do_sample=False)
    assert torch.equal(generate(case, seed=5, audio_temperature=0), audio_greedy)
    assert torch.equal(generate(case, seed=5, audio_temperature=0, audio_do_sample=True), audio_greedy)
    assert not torch.equal(text_greedy, audio_greedy)


def test_seeded_sampling_is_reproducible(case):
    first = generate(case, seed=11, **ALL_SETTINGS)
    assert torch.equal(generate(case, seed=11, **ALL_SETTINGS), first)
    assert not torch.equal(generate(case, seed=12, **ALL_SETTINGS), first)


def test_audio_repetition_penalty_semantics(case):
    """Delay applies the penalty also when greedy (as its reference); Local only when sampling (as its reference)."""
    model = case[0]
    plain = generate(case, do_sample=False)
    penalised = generate(case, do_sample=False, audio_repetition_penalty=50.0)
    if model.config.model_type == "codectts_delay":
        assert not torch.equal(penalised, plain)
    else:
        assert torch.equal(penalised, plain)
        assert not torch.equal(
            generate(case, seed=4, audio_repetition_penalty=50.0), generate(case, seed=4, audio_repetition_penalty=1.0)
        )


def test_generation_config_round_trip(case, tmp_path):
    model = case[0]
    saved = model.generation_config
    try:
        model.generation_config = copy.deepcopy(saved)
        for key, value in ALL_SETTINGS.items():
            setattr(model.generation_config, key, value)
        want = generate(case, seed=21)
        model.save_pretrained(tmp_path)
    finally:
        model.generation_config = saved
    stored = json.loads((tmp_path / "generation_config.json").read_text())
    assert {key: stored[key] for key in ALL_SETTINGS} == ALL_SETTINGS
    assert not set(stored) & set(TEXT_SAMPLING_ALIASES)
    reloaded = AutoModel.from_pretrained(tmp_path).eval()
    assert torch.equal(generate(case, seed=21, model=reloaded), want)
    assert not torch.equal(generate(case, seed=21), want)  # the model's own preset differs


def test_presets_use_the_same_keys_in_both_families(tiny_models, tmp_path):
    _, _, delay, local = tiny_models
    keys = {}
    for name, model in (("delay", delay), ("local", local)):
        model.generation_config.save_pretrained(tmp_path / name)
        stored = json.loads((tmp_path / name / "generation_config.json").read_text())
        keys[name] = set(stored) & (SAMPLING_KEYS | set(TEXT_SAMPLING_ALIASES))
        assert stored["do_sample"] is True
    assert keys["delay"] == keys["local"]
    assert SAMPLING_KEYS - {"audio_do_sample"} <= keys["delay"]  # audio_do_sample=None (follow do_sample) may be left out


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(num_beams=2), r"beam search \(num_beams=2\) is not supported"),
        (dict(num_beams=2, do_sample=True), r"beam search \(num_beams=2\) is not supported"),
        (dict(num_return_sequences=2), "num_return_sequences > 1 is not supported"),
        (dict(prompt_lookup_num_tokens=3), "assisted generation"),
        (dict(do_sample=False, penalty_alpha=0.6, top_k=4), "contrastive search"),
        (dict(do_sample=True, temperature=0.0), "temperature must be > 0 when sampling"),
        (dict(do_sample=True, top_k=-1), "top_k must be a non-negative int"),
        (dict(do_sample=True, top_p=0.0), r"top_p must be in \(0, 1\]"),
        (dict(audio_top_p=1.5), r"audio_top_p must be in \(0, 1\]"),
        (dict(audio_top_k=2.5), "audio_top_k must be a non-negative int"),
        (dict(audio_repetition_penalty=0.0), "audio_repetition_penalty must be > 0"),
        (dict(audio_repetition_penalty_scope="batch"), "audio_repetition_penalty_scope must be"),
    ],
)
def test_unsupported_or_invalid_settings_raise(case, settings, message):
    with pytest.raises(ValueError, match=message):
        generate(case, **settings)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the lagged stop flag only lags on CUDA")
@pytest.mark.parametrize("family", ["delay", "local"])
def test_lagged_stop_on_cuda_gives_the_same_sequences(family, tiny_models):
    # without a streamer the stop flag is read one step late on CUDA and the extra row dropped; with one it is not

    tokenizer, codec, delay, local = tiny_models
    model = copy.deepcopy(delay if family == "delay" else local).cuda()  # the session models stay on the CPU
    processor = CodecTTSProcessor.from_model_config(model.config, tokenizer, codec)
    inputs = processor([[processor.build_user_message(text="Hi")]]).to("cuda")
    lagged = model.generate(**inputs, do_sample=False, max_new_tokens=60)
    class Ignore:
        def put(self, value):
            pass

        def end(self):
            pass

    immediate = model.generate(**inputs, do_sample=False, max_new_tokens=60, streamer=Ignore())
    assert torch.equal(lagged, immediate)
