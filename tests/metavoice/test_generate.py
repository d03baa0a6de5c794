"""End to end: processor(text=, reference_audio=) -> model.generate -> codes (+ audio through a bundled EnCodec),
and pipeline("text-to-speech")."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "golden" / "metavoice"
VOICE = load_file(str(GOLDEN / "speaker_encoder" / "outputs.safetensors"))
REFERENCE = (VOICE["utt0.wav"].numpy(), 16000)
TEXTS = ["Hello world.", "A second, longer sentence to speak."]


@pytest.fixture(scope="module")
def bundle(pt_source, tmp_path_factory):
    """The converted fixture with a tiny random EnCodec (24 kHz, 75 Hz, 8 codebooks of 1024) bundled."""
    from transformers import EncodecConfig, EncodecModel

    from codectts.conversion import convert_checkpoint

    config = EncodecConfig(
        num_filters=4,
        hidden_size=16,
        codebook_dim=16,
        num_residual_layers=1,
        num_lstm_layers=1,
        upsampling_ratios=[8, 5, 4, 2],
        codebook_size=1024,
        target_bandwidths=[1.5, 6.0],
    )
    torch.manual_seed(0)
    codec_dir = tmp_path_factory.mktemp("encodec")
    EncodecModel(config).save_pretrained(codec_dir)
    return convert_checkpoint(pt_source, tmp_path_factory.mktemp("bundle") / "model", codec=codec_dir)


@pytest.fixture(scope="module")
def tts_model(bundle):
    from transformers import AutoModel

    return AutoModel.from_pretrained(bundle).eval()


def test_generate_codes_and_audio(tts_model, processor):
    inputs = processor(text=TEXTS, reference_audio=REFERENCE)
    torch.manual_seed(0)
    out = tts_model.generate(**inputs, max_new_tokens=24, top_k=50)
    config = tts_model.config
    hop = int(np.prod(tts_model.codec.config.upsampling_ratios))
    assert len(out.audio_codes) == len(out.audio) == len(TEXTS)
    for codes, audio in zip(out.audio_codes, out.audio):
        assert codes.dtype == torch.long and codes.shape[0] == config.num_codebooks
        assert 0 < codes.shape[1] <= 12
        assert int(codes.min()) >= 0 and int(codes.max()) < config.first_stage_config.codebook_size
        assert audio.dtype == torch.float32 and audio.shape == (codes.shape[1] * hop,)
        expected = tts_model.codec.decode(codes[None, None], [None]).audio_values[0, 0, : audio.shape[0]]
        torch.testing.assert_close(audio, expected)
    assert hop * config.frame_rate == config.sampling_rate == processor.sampling_rate


def test_greedy_generation_is_consistent_across_stages_batching_and_caches(tts_model, processor):
    inputs = processor(text=TEXTS, reference_audio=REFERENCE)
    greedy = dict(max_new_tokens=24, do_sample=False, guidance_scale=(2.0, 1.5), decode_audio=False)
    out = tts_model.generate(**inputs, **greedy)
    fs, ss = tts_model.config.first_stage_config, tts_model.config.second_stage_config
    prompt_length = inputs["input_ids"].shape[1]
    for b, codes in enumerate(out.audio_codes):
        new = out.sequences[b, prompt_length:]
        frames = codes.shape[1]
        # codebooks 0/1 are the first stage's token pairs; every position after them is end-of-audio or unused
        assert torch.equal(new[0 : 2 * frames : 2], codes[0])
        assert torch.equal(new[1 : 2 * frames : 2] - fs.codebook_size, codes[1])
        if 2 * frames < new.shape[0]:
            assert int(new[2 * frames]) == fs.end_of_audio_token_id
        # codebooks 2..7 are the second stage's argmax (pad class excluded) at the audio positions
        text = inputs["input_ids"][b][inputs["attention_mask"][b].bool()] - (fs.text_offset - ss.text_offset)
        rows = torch.full((1, 2, ss.block_size), ss.pad_token_id)
        rows[0, 0, : len(text)] = text
        rows[0, 0, len(text) : len(text) + frames] = codes[0]
        rows[0, 1, len(text) : len(text) + frames] = codes[1]
        logits = torch.stack(tts_model.second_stage(rows, speaker_embeds=out.speaker_embeds[b : b + 1]).logits, 1)
        expected = logits[0, :, len(text) : len(text) + frames, : ss.pad_token_id].argmax(-1)
        assert torch.equal(codes[2:], expected)
    # every item alone gives the same codes; so does the static cache
    for b, text in enumerate(TEXTS):
        alone = tts_model.generate(**processor(text=text, reference_audio=REFERENCE), **greedy)
        assert torch.equal(alone.audio_codes[0], out.audio_codes[b])
    static = tts_model.generate(**inputs, **greedy, cache_implementation="static")
    assert all(torch.equal(a, b) for a, b in zip(static.audio_codes, out.audio_codes))


def test_voice_inputs_are_interchangeable(tts_model, processor):
    inputs = processor(text=TEXTS[0], reference_audio=REFERENCE)
    greedy = dict(max_new_tokens=10, do_sample=False, decode_audio=False)
    a = tts_model.generate(**inputs, **greedy)
    text_only = processor(text=TEXTS[0])
    b = tts_model.generate(**text_only, reference_audio=REFERENCE, **greedy)
    c = tts_model.generate(**text_only, speaker_embeds=tts_model.embed_speaker(*REFERENCE), **greedy)
    assert torch.equal(a.audio_codes[0], b.audio_codes[0]) and torch.equal(a.audio_codes[0], c.audio_codes[0])
    torch.testing.assert_close(a.speaker_embeds, b.speaker_embeds)


def test_pipeline_text_to_speech_with_a_reference_voice(bundle, tts_model):
    from transformers import pipeline

    tts = pipeline("text-to-speech", model=str(bundle))
    kwargs = {"max_new_tokens": 16, "top_k": 20}
    torch.manual_seed(0)
    result = tts(TEXTS[0], generate_kwargs={"reference_audio": REFERENCE, **kwargs})
    assert result["sampling_rate"] == 24000 and result["audio"].dtype == np.float32 and result["audio"].ndim == 1
    torch.manual_seed(0)
    expected = tts_model.generate(**tts.processor(text=TEXTS[0]), reference_audio=REFERENCE, **kwargs).audio[0]
    np.testing.assert_allclose(result["audio"], expected.numpy(), atol=1e-6)


def test_generate_errors(model, tts_model, processor):
    text_only = processor(text=TEXTS[0])
    with pytest.raises(ValueError, match="needs a voice"):
        tts_model.generate(**text_only, max_new_tokens=4)
    with pytest.raises(TypeError, match="unexpected"):
        tts_model.generate(**text_only, guidance_scale=None, max_new_tokens=4, bogus=1)
    with pytest.raises(ValueError, match="once"):
        tts_model.generate(**processor(text=TEXTS[0], reference_audio=REFERENCE), reference_audio=REFERENCE)
    # without a bundled codec: codes only, and a clear error when asked for a waveform
    out = model.generate(**text_only, guidance_scale=None, max_new_tokens=4, do_sample=False)
    assert out.audio is None and len(out.audio_codes) == 1
    with pytest.raises(ValueError, match="codec"):
        processor.decode(out)


def test_streaming_first_stage_audio_equals_the_final_coarse_decode(tts_model, processor):
    from codectts.processing.metavoice.streaming import stream_first_stage_audio

    inputs = processor(text=TEXTS, reference_audio=REFERENCE)
    stream = stream_first_stage_audio(tts_model, inputs, chunk_frames=3, max_new_tokens=24, top_k=1, top_p=None)
    chunks = list(stream)
    assert stream.result is not None
    for b, codes in enumerate(stream.result.audio_codes):
        mine = [c for c in chunks if c.batch_index == b]
        assert mine and mine[-1].is_last and not any(c.is_last for c in mine[:-1])
        assert [c.first_frame for c in mine] == sorted(c.first_frame for c in mine)
        coarse = tts_model.decode_audio_codes([codes[:2]])[0]
        torch.testing.assert_close(torch.cat([c.audio for c in mine]), coarse, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="chunk_frames"):
        stream_first_stage_audio(tts_model, inputs, chunk_frames=0)


def test_model_card_usage_snippet_runs(bundle, tmp_path, monkeypatch):
    import re

    import soundfile as sf

    from codectts.hub_cards import __file__ as cards_init

    card = (Path(cards_init).parent / "metavoice.md").read_text()
    snippet = re.search(r"```python\n(.*?)```", card, re.DOTALL).group(1)
    snippet = snippet.replace("path/to/metavoice", str(bundle)).replace("max_new_tokens=300", "max_new_tokens=12")
    sf.write(tmp_path / "reference.wav", REFERENCE[0], REFERENCE[1], subtype="FLOAT")
    monkeypatch.chdir(tmp_path)
    exec(compile(snippet, "metavoice.md", "exec"), {})
    assert sf.info(str(tmp_path / "output.wav")).samplerate == 24000


def test_half_precision_generation(bundle, processor):
    from transformers import AutoModel

    half = AutoModel.from_pretrained(bundle, dtype=torch.bfloat16).eval()
    assert half.first_stage.embed_tokens.weight.dtype == torch.bfloat16
    out = half.generate(
        **processor(text=TEXTS, reference_audio=REFERENCE), max_new_tokens=12, cache_implementation="static"
    )
    assert all(c.shape[0] == 8 and c.shape[1] > 0 for c in out.audio_codes)
    assert all(a.dtype == torch.float32 and bool(torch.isfinite(a).all()) for a in out.audio)


def test_deepfilternet_is_optional_with_a_clear_error():
    from codectts.processing.metavoice.enhance import deepfilternet_enhance

    try:
        import df  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="deepfilter"):
            deepfilternet_enhance(torch.zeros(2400), 24000)
    else:  # pragma: no cover - only where the extra is installed
        audio, rate = deepfilternet_enhance(torch.randn(24000) * 0.1, 24000)
        assert rate == 48000 and audio.ndim == 1


def test_pipeline_processor_kwargs_reference(bundle, processor):
    """transformers' pipeline forwards `processor_kwargs` (>= 5.x): the voice can travel that way too."""
    direct = processor(text=TEXTS[0], reference_audio=REFERENCE)
    via = processor(TEXTS[0], processor_kwargs={"reference_audio": REFERENCE})
    assert torch.equal(direct["speaker_features"], via["speaker_features"])
