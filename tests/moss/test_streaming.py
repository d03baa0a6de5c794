"""Streaming synthesis: chunks yielded while generate() runs concatenate to the offline decode."""

from __future__ import annotations

import threading

import pytest
import torch

from codectts.demo import build_tiny_models, reference_voice, speaking_bias
from codectts.processing.moss.processor import CodecTTSProcessor
from codectts.processing.moss.streaming import stream_speech


@pytest.fixture(scope="module")
def tiny():
    return build_tiny_models(seed=0, n_vq=4)


def _check_stream_equals_offline(model, processor, inputs, chunk_frames, max_new_tokens=30, **generate_kwargs):
    kwargs = dict(do_sample=True, max_new_tokens=max_new_tokens, sequence_bias=speaking_bias(model.config))
    kwargs.update(generate_kwargs)
    torch.manual_seed(123)
    chunks = list(stream_speech(model, processor, inputs, chunk_frames=chunk_frames, **kwargs))
    torch.manual_seed(123)
    generated = model.generate(**inputs, return_dict_in_generate=True, **kwargs)
    offline = processor.decode_generation(generated.sequences, input_ids=inputs["input_ids"])
    hop = processor.audio_tokenizer.config.downsample_rate
    n_segments = 0
    for b, speech in enumerate(offline):
        for s, wave in enumerate(speech.audio):
            pieces = [c for c in chunks if c.batch_index == b and c.segment_index == s]
            assert pieces, f"no streamed chunk for sequence {b} segment {s}"
            assert [c.is_last for c in pieces] == [False] * (len(pieces) - 1) + [True]
            assert all(c.audio.numel() <= chunk_frames * hop for c in pieces[:-1])
            assert pieces[0].first_frame == 0
            streamed = torch.cat([c.audio for c in pieces])
            assert streamed.shape == wave.shape
            torch.testing.assert_close(streamed, wave, rtol=1e-5, atol=1e-5 * max(1.0, wave.abs().max().item()))
            n_segments += 1
    streamed_keys = {(c.batch_index, c.segment_index) for c in chunks}
    assert len(streamed_keys) == n_segments
    return n_segments


@pytest.mark.parametrize("family", ["delay", "local"])
@pytest.mark.parametrize("chunk_frames", [1, 3])
def test_stream_equals_offline_batch(tiny, family, chunk_frames):
    tokenizer, codec, delay, local = tiny
    model = delay if family == "delay" else local
    processor = CodecTTSProcessor.from_model_config(model.config, tokenizer, codec)
    conversations = [
        [processor.build_user_message(text="Hi there", reference=[(reference_voice(1.0), 24000)])],
        [processor.build_user_message(text="A second, longer sentence")],
    ]
    inputs = processor(conversations, mode="generation")
    assert _check_stream_equals_offline(model, processor, inputs, chunk_frames) >= 2


def test_local_fewer_codebooks_stream_and_decode_alike(tiny):
    """Local `n_vq_for_inference=K`: the other codebooks stay pad; offline decoding infers K as streaming does."""
    tokenizer, codec, _, local = tiny
    processor = CodecTTSProcessor.from_model_config(local.config, tokenizer, codec)
    inputs = processor([[processor.build_user_message(text="Hi there")]], mode="generation")
    assert _check_stream_equals_offline(local, processor, inputs, chunk_frames=2, n_vq_for_inference=2) >= 1


@pytest.mark.parametrize("family", ["delay", "local"])
def test_stream_continuation_skips_the_given_prefix(tiny, family):
    tokenizer, codec, delay, local = tiny
    model = delay if family == "delay" else local
    processor = CodecTTSProcessor.from_model_config(model.config, tokenizer, codec)
    prefix = torch.randint(0, codec.config.codebook_size, (6, model.config.n_vq))
    conversation = [processor.build_user_message(text="Go on"), processor.build_assistant_message([prefix])]
    inputs = processor([conversation], mode="continuation")
    assert _check_stream_equals_offline(model, processor, inputs, chunk_frames=2) >= 1


@pytest.mark.parametrize("family", ["delay", "local"])
@pytest.mark.parametrize("mode", ["generation", "continuation"])
def test_a_backlog_is_decoded_in_one_codec_call(tiny, family, mode, monkeypatch):
    """Rows that queue up while the consumer is busy are decoded together (one streaming codec call instead of one
    per chunk) and still handed out as chunks of at most ``chunk_frames`` frames equal to the offline waveform."""
    tokenizer, codec, delay, local = tiny
    model = delay if family == "delay" else local
    processor = CodecTTSProcessor.from_model_config(model.config, tokenizer, codec)
    conversation = [processor.build_user_message(text="Hi there")]
    if mode == "continuation":
        prefix = torch.randint(0, codec.config.codebook_size, (3, model.config.n_vq))
        conversation.append(processor.build_assistant_message([prefix]))
    inputs = processor([conversation], mode=mode)

    generated, stream_calls = threading.Event(), []
    real_generate, real_decode = model.generate, codec.decode

    def generate(*args, **kwargs):
        try:
            return real_generate(*args, **kwargs)
        finally:
            generated.set()

    def decode(codes, **kwargs):
        if "streaming_state" in kwargs:
            stream_calls.append(codes.shape[-1])
            if len(stream_calls) == 1:  # a busy consumer: every later row is queued before it comes back
                assert generated.wait(60)
        return real_decode(codes, **kwargs)

    monkeypatch.setattr(model, "generate", generate)
    monkeypatch.setattr(codec, "decode", decode)
    assert _check_stream_equals_offline(model, processor, inputs, chunk_frames=1) == 1
    assert len(stream_calls) == 2 and stream_calls[1] > 1, stream_calls


def test_stream_rejects_bad_arguments(tiny):
    tokenizer, codec, delay, _ = tiny
    processor = CodecTTSProcessor.from_model_config(delay.config, tokenizer, codec)
    inputs = processor([[processor.build_user_message(text="x")]], mode="generation")
    with pytest.raises(ValueError, match="chunk_frames"):
        next(stream_speech(delay, processor, inputs, chunk_frames=0))
    with pytest.raises(ValueError, match="streamer"):
        next(stream_speech(delay, processor, inputs, streamer=object()))


def test_stream_propagates_generation_errors(tiny):
    tokenizer, codec, delay, _ = tiny
    processor = CodecTTSProcessor.from_model_config(delay.config, tokenizer, codec)
    inputs = processor([[processor.build_user_message(text="x")]], mode="generation")
    with pytest.raises(ValueError, match="num_beams"):
        list(stream_speech(delay, processor, inputs, num_beams=2))


def test_closing_the_stream_early_stops_generation(tiny):
    """Breaking out of the loop ends generate() at its next step instead of running to max_new_tokens."""
    from transformers import StoppingCriteria, StoppingCriteriaList

    class CountSteps(StoppingCriteria):
        steps = 0

        def __call__(self, input_ids, scores, **kwargs):
            CountSteps.steps += 1
            return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

    tokenizer, codec, delay, _ = tiny
    processor = CodecTTSProcessor.from_model_config(delay.config, tokenizer, codec)
    inputs = processor([[processor.build_user_message(text="Hi there")]], mode="generation")
    config, max_new_tokens = delay.config, 2000
    chunks = stream_speech(
        delay, processor, inputs, chunk_frames=1, do_sample=True, max_new_tokens=max_new_tokens,
        sequence_bias=speaking_bias(config), stopping_criteria=StoppingCriteriaList([CountSteps()]),
        suppress_tokens=[config.audio_end_token_id, config.im_end_token_id],  # nothing ends the audio early
    )  # fmt: skip
    assert next(chunks).audio.numel() > 0
    chunks.close()
    assert 0 < CountSteps.steps < max_new_tokens // 2
