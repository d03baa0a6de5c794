"""Text front-end, feature path, processor + model.generate against the original pipeline, and
pipeline("text-to-speech")."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

GOLDEN = Path(__file__).parent.parent / "fixtures" / "golden" / "maskgct"


def _espeak_available() -> bool:
    try:
        from codectts.processing.maskgct.g2p import _backend

        _backend("en-us")
        return True
    except Exception:
        return False


needs_espeak = pytest.mark.skipif(not _espeak_available(), reason="phonemizer / espeak-ng not installed")


def outputs(name):
    return load_file(str(GOLDEN / f"outputs_{name}.safetensors"))


def recipes(name):
    return json.loads((GOLDEN / "recipes.json").read_text())[name]["recipes"]


def fixture_prompt(o):
    return [(o["in.prompt_16k"].numpy(), 16000), (o["in.prompt_24k"].numpy(), 24000)]


@needs_espeak
def test_phonemize_matches_the_original_front_end(processor):
    cases = json.loads((GOLDEN / "g2p_cases.json").read_text())
    assert {c["language"] for c in cases} >= {"en", "fr", "de"}
    for case in cases:
        phonemes, ids = processor.phonemize(case["text"], case["language"])
        assert phonemes == case["phonemes"], case["text"]
        assert ids == case["phone_ids"], case["text"]


@needs_espeak
def test_front_end_errors(processor):
    with pytest.raises(ValueError, match="unknown language"):
        processor.phonemize("Hello.", "xx")
    with pytest.raises(NotImplementedError, match="Chinese"):
        processor.phonemize("你好", "zh")
    with pytest.raises(ValueError, match="non-empty"):
        processor.phonemize("  ", "en")
    with pytest.raises(ValueError, match="no letters"):
        processor.phonemize("123 ...", "en") if False else processor.phonemize("... !", "en")


def test_missing_phonemizer_is_a_clear_error(monkeypatch):
    from codectts.processing.maskgct import g2p

    g2p._backend.cache_clear()
    monkeypatch.setitem(sys.modules, "phonemizer.backend", None)
    try:
        with pytest.raises(g2p.PhonemizerNotAvailableError, match="pip install codectts\\[phonemizer\\]"):
            g2p._backend("en-us")
    finally:
        g2p._backend.cache_clear()


@torch.no_grad()
def test_feature_path(processor, model):
    o = outputs("semantic_codec")
    features = processor.feature_extractor(o["in.audio_16k"].numpy(), sampling_rate=16000, return_tensors="pt")
    assert features["input_features"].shape == (1,) + tuple(o["fe.input_features"].shape)
    torch.testing.assert_close(features["input_features"][0], o["fe.input_features"], atol=1e-4, rtol=0)
    assert torch.equal(features["attention_mask"][0].long(), o["fe.attention_mask"].long())
    hidden = model.semantic_model(
        input_features=features["input_features"], attention_mask=features["attention_mask"], output_hidden_states=True
    )
    assert len(hidden.hidden_states) == model.config.semantic_layer + 1  # truncated to the layers used
    torch.testing.assert_close(hidden.hidden_states[-1], o["w2v.hidden_states_17"], atol=1e-4, rtol=0)
    rng = torch.get_rng_state()
    codes = model.extract_semantic_codes(features["input_features"], features["attention_mask"])
    assert torch.equal(codes, o["pipe.semantic_code"])
    assert torch.equal(torch.get_rng_state(), rng)  # the feature path draws no random numbers


@needs_espeak
@pytest.mark.parametrize("run", ["greedy_autolen", "greedy_fixedlen", "sampled_autolen", "sampled_fixedlen"])
def test_generate_matches_the_original_pipeline(processor, model, run):
    o = outputs("pipeline")
    r = next(r for r in recipes("pipeline") if r["name"] == run)
    a = r["args"]
    inputs = processor(
        text=a["target_text"], prompt_text=a["prompt_text"], prompt_audio=fixture_prompt(o), language=a["language"]
    )
    n_prompt = int(inputs["num_prompt_phones"][0])
    assert inputs["phone_ids"][0, :n_prompt].tolist() == o["g2p.prompt_phone_id"].tolist()
    assert inputs["phone_ids"][0, n_prompt:].tolist() == o["g2p.target_phone_id"].tolist()
    kw = {
        "n_timesteps": a["n_timesteps"],
        "cfg": a["cfg"],
        "rescale_cfg": a["rescale_cfg"],
        "n_timesteps_s2a": a["n_timesteps_s2a"],
        "cfg_s2a": a["cfg_s2a"],
        "rescale_cfg_s2a": a["rescale_cfg_s2a"],
        "do_sample": not r["noise_free"],
    }
    torch.manual_seed(r["seed_text2semantic"])
    out = model.generate(**inputs, target_len=a["target_len"], **kw)
    assert torch.equal(out.semantic_ids, o[run + ".combine_semantic_code"])
    assert torch.equal(out.prompt_semantic_ids, o[run + ".prompt_semantic_code"])
    assert torch.equal(out.prompt_acoustic_codes, o[run + ".acoustic_code"])
    codes = out.acoustic_codes
    if not r["noise_free"]:  # the original re-seeded before its S2A stage: replay that stage alone
        torch.manual_seed(r["seed_semantic2acoustic"])
        s2a = {"cfg": a["cfg_s2a"], "rescale_cfg": a["rescale_cfg_s2a"]}
        layer0 = model.s2a_1layer.generate(
            semantic_ids=out.semantic_ids,
            prompt_codes=out.prompt_acoustic_codes,
            n_timesteps=a["n_timesteps_s2a"][:1],
            **s2a,
        )
        codes = model.s2a_full.generate(
            semantic_ids=out.semantic_ids,
            prompt_codes=out.prompt_acoustic_codes,
            n_timesteps=a["n_timesteps_s2a"],
            gt_codes=layer0,
            **s2a,
        )
    audio = model.acoustic_codec.decode(audio_codes=codes).audio_values[0]
    assert audio.shape == o[run + ".recovered_audio"].shape
    torch.testing.assert_close(audio, o[run + ".recovered_audio"], atol=1e-4, rtol=0)
    if r["noise_free"]:
        torch.testing.assert_close(out.audio[0], o[run + ".recovered_audio"], atol=1e-4, rtol=0)
        assert out.acoustic_codes.shape == (
            1,
            out.semantic_ids.shape[1] - o[run + ".acoustic_code"].shape[1],
            model.config.acoustic_codec_config.num_quantizers,
        )


@needs_espeak
def test_prompt_audio_is_resampled_for_both_paths(processor):
    o = outputs("pipeline")
    wav48 = np.interp(
        np.arange(0, len(o["in.prompt_24k"]), 0.5), np.arange(len(o["in.prompt_24k"])), o["in.prompt_24k"].numpy()
    ).astype(np.float32)
    inputs = processor(text="Hello.", prompt_text="We do not break.", prompt_audio=(wav48, 48000))
    assert inputs["prompt_audio_values"].shape[-1] == pytest.approx(len(wav48) / 2, abs=2)
    assert int(inputs["prompt_num_samples"][0]) == pytest.approx(len(wav48) / 3, abs=2)
    assert inputs["input_features"].shape[-1] == 160 and inputs["phone_ids"].dtype == torch.long



@needs_espeak
def test_prompt_audio_from_a_file(processor, tmp_path):
    import soundfile as sf

    o = outputs("pipeline")
    sf.write(tmp_path / "prompt.wav", o["in.prompt_24k"].numpy(), 24000, subtype="FLOAT")
    inputs = processor(text="Hello.", prompt_text="We do not break.", prompt_audio=str(tmp_path / "prompt.wav"))
    torch.testing.assert_close(inputs["prompt_audio_values"][0], o["in.prompt_24k"])  # already 24 kHz: untouched
    assert int(inputs["prompt_num_samples"][0]) == len(o["in.prompt_24k"]) * 2 // 3


@needs_espeak
def test_bad_inputs(processor, model):
    o = outputs("pipeline")
    good = {"text": "Hello.", "prompt_text": "We do not break.", "prompt_audio": fixture_prompt(o)}
    with pytest.raises(ValueError, match="16000 Hz"):
        processor(**{**good, "prompt_audio": [(o["in.prompt_16k"].numpy(), 24000), good["prompt_audio"][1]]})
    with pytest.raises(ValueError, match="sampling rate"):
        processor(**{**good, "prompt_audio": o["in.prompt_24k"].numpy()})
    with pytest.raises(ValueError, match="non-empty"):
        processor(**{**good, "text": ""})
    with pytest.raises(ValueError, match="unknown language"):
        processor(**good, language="xx")
    with pytest.raises(ValueError, match="prompt_text"):
        processor(text="Hello.", prompt_audio=fixture_prompt(o))
    inputs = processor(**good)
    with pytest.raises(ValueError, match="target_len"):
        model.generate(**inputs, target_len=0, do_sample=False)
    with pytest.raises(ValueError, match="n_timesteps_s2a"):
        model.generate(**inputs, n_timesteps_s2a=[1], do_sample=False)


@needs_espeak
def test_text_to_speech_pipeline(converted, model):
    from transformers import pipeline

    o = outputs("pipeline")
    tts = pipeline("text-to-speech", model=str(converted))
    params = {
        "prompt_text": " We do not break.",
        "prompt_audio": fixture_prompt(o),
        "language": "en",
        "target_len": 0.3,
        "n_timesteps": 3,
        "n_timesteps_s2a": [2, 1, 1, 1],
        "do_sample": False,
    }
    result = tts("Hello world, this is a test.", forward_params=params)
    assert result["sampling_rate"] == 24000 and result["audio"].dtype == np.float32
    inputs = tts.processor(
        text="Hello world, this is a test.", prompt_text=params["prompt_text"], prompt_audio=params["prompt_audio"]
    )
    expected = model.generate(
        **inputs, **{k: v for k, v in params.items() if k not in ("prompt_text", "prompt_audio", "language")}
    )
    np.testing.assert_allclose(result["audio"], expected.audio[0].numpy(), atol=1e-5)


@needs_espeak
def test_bfloat16_generators_keep_the_prompt_path_in_float32(converted, processor):
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(converted), dtype=torch.bfloat16).eval()
    assert model.t2s.dtype == model.s2a_full.dtype == torch.bfloat16
    assert model.acoustic_codec.dtype == model.semantic_model.dtype == torch.float32
    o = outputs("pipeline")
    inputs = processor(text="Hello world.", prompt_text=" We do not break.", prompt_audio=fixture_prompt(o))
    out = model.generate(**inputs, n_timesteps=3, n_timesteps_s2a=[2, 1, 1, 1], do_sample=False)
    assert torch.equal(out.prompt_semantic_ids, o["greedy_autolen.prompt_semantic_code"])
    assert torch.equal(out.prompt_acoustic_codes, o["greedy_autolen.acoustic_code"])
    assert out.audio.dtype == torch.float32 and torch.isfinite(out.audio).all()
