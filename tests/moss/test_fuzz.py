"""Property-based fuzzing (hypothesis) of the three input boundaries of the MOSS family: the message builder and
prompt construction, the codec's input checks, and the decode path. Random shapes, dtypes, lengths, unicode and masks
either work or raise ValueError/TypeError (never an internal exception type); streaming equals offline where both
apply. Example counts are kept small so that the file runs in CI in well under a minute."""

from __future__ import annotations

import math

import pytest
import torch

from codectts.demo import build_tiny_models
from codectts.processing.moss.processor import CodecTTSProcessor

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FUZZ = settings(max_examples=25, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
CLEAN_ERRORS = (ValueError, TypeError)

TOKENIZER, CODEC, DELAY, LOCAL = build_tiny_models(seed=0, n_vq=4)
PROCESSORS = {
    "delay": CodecTTSProcessor.from_model_config(DELAY.config, TOKENIZER, CODEC),
    "local": CodecTTSProcessor.from_model_config(LOCAL.config, TOKENIZER, CODEC, normalize_text=False),
}
CONTROL_STRINGS = ["<|im_end|>", "<|im_start|>", "<|audio_start|>", "<|audio_end|>", "<|audio_user_slot|>",
                   "<|audio_assistant_gen_slot|>", "<|endoftext|>", "<|audio|>", "{text}", "\n", "[S1]"]
text_pieces = st.one_of(st.text(max_size=12), st.sampled_from(CONTROL_STRINGS))
texts = st.lists(text_pieces, max_size=5).map("".join)
optional_field = st.one_of(st.none(), texts, st.integers(-2, 2), st.floats(allow_nan=True))


def _control_counts(processor, ids: torch.Tensor) -> list[int]:
    names = ("im_start_token_id", "im_end_token_id", "audio_start_token_id", "audio_end_token_id",
             "audio_user_slot_token_id", "audio_assistant_gen_slot_token_id", "pad_token_id")
    return [int((ids == getattr(processor, name)).sum()) for name in names]


@FUZZ
@given(
    layout=st.sampled_from(["delay", "local"]),
    text=st.one_of(st.none(), texts),
    instruction=optional_field,
    language=optional_field,
    tokens=st.one_of(st.none(), st.integers(-3, 300), st.booleans(), st.floats(-1, 5)),
    frames=st.lists(st.integers(0, 6), max_size=2),
)
def test_message_builder_and_prompts(layout, text, instruction, language, tokens, frames):
    processor = PROCESSORS[layout]
    references = [torch.randint(0, processor.audio_pad_code, (n, processor.n_vq)) for n in frames] or None
    try:
        message = processor.build_user_message(
            text=text, reference=references, instruction=instruction, tokens=tokens, language=language
        )
        inputs = processor([message])
    except CLEAN_ERRORS as error:
        assert str(error)
        return
    ids = inputs["input_ids"][0]
    assert ids.shape[-1] == 1 + processor.n_vq and bool(inputs["attention_mask"].all())
    # whatever the text holds, the prompt has exactly the control tokens of the same prompt with harmless text
    plain = processor([processor.build_user_message(
        text=None if text is None else "x", reference=references, tokens=tokens if isinstance(tokens, int) else None,
        instruction=None if instruction is None else "y", language=None if language is None else "z",
    )])["input_ids"][0]
    assert _control_counts(processor, ids[:, 0]) == _control_counts(processor, plain[:, 0])
    if layout == "local" and text:  # not normalised: the text is in the prompt verbatim
        assert text in processor.tokenizer.decode(ids[:, 0].tolist())


DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int16, torch.int64, torch.bool]
SPECIAL_VALUES = [0.0, 0.5, -1.0, 1e6, float("nan"), float("inf")]


@FUZZ
@given(
    shape=st.lists(st.integers(0, 3), min_size=0, max_size=4).map(tuple),
    samples=st.integers(0, 2 * 1920 + 7),
    dtype=st.sampled_from(DTYPES),
    special=st.one_of(st.none(), st.sampled_from(SPECIAL_VALUES)),
    num_quantizers=st.one_of(st.none(), st.integers(-1, 34)),
    with_mask=st.booleans(),
)
def test_codec_encode_input_checks(shape, samples, dtype, special, num_quantizers, with_mask):
    values = torch.rand(*shape, samples, generator=torch.Generator().manual_seed(samples)) * 0.6 - 0.3
    if special is not None and values.numel():
        values.view(-1)[values.numel() // 2] = special
    values = values.to(dtype)
    mask = None
    if with_mask and values.dim() >= 2:
        mask = torch.ones(values.shape[0], values.shape[-1], dtype=torch.bool)
        mask[:, max(1, values.shape[-1] // 2):] = False
    try:
        with torch.no_grad():
            out = CODEC.encode(values, padding_mask=mask, num_quantizers=num_quantizers)
    except CLEAN_ERRORS as error:
        assert str(error)
        return
    hop = CODEC.config.downsample_rate
    assert out.audio_codes.shape == (values.shape[0], num_quantizers or CODEC.config.num_quantizers,
                                     math.ceil(samples / hop))
    assert bool(((out.audio_codes >= 0) & (out.audio_codes < CODEC.config.codebook_size)).all())


@FUZZ
@given(
    shape=st.lists(st.integers(0, 5), min_size=1, max_size=4).map(tuple),
    dtype=st.sampled_from([torch.int64, torch.int32, torch.uint8, torch.float32, torch.bool]),
    high=st.sampled_from([64, 65, 1000]),
    negative=st.booleans(),
    lengths=st.one_of(st.none(), st.lists(st.integers(-1, 6), min_size=1, max_size=4)),
    chunk=st.integers(1, 4),
)
def test_codec_decode_input_checks_and_streaming_equals_offline(shape, dtype, high, negative, lengths, chunk):
    codes = torch.randint(0, high, shape, generator=torch.Generator().manual_seed(sum(shape)))
    if negative and codes.numel():
        codes.view(-1)[0] = -1
    codes = codes.to(dtype)
    lengths_tensor = None if lengths is None else torch.tensor(lengths)
    try:
        with torch.no_grad():
            offline = CODEC.decode(codes, audio_codes_lengths=lengths_tensor)
    except CLEAN_ERRORS as error:
        assert str(error)
        return
    batch_codes = codes if codes.dim() == 3 else codes[None]
    frames = batch_codes.shape[-1]
    assert offline.audio_values.shape == (batch_codes.shape[0], 1, frames * CODEC.config.downsample_rate)
    if lengths is None:  # streaming the same codes chunk by chunk gives the same audio
        state, pieces = None, []
        with torch.no_grad():
            for part in batch_codes.split(chunk, dim=-1):
                out = CODEC.decode(part, past_key_values=state, use_cache=True)
                state = out.past_key_values
                pieces.append(out.audio_values)
        streamed = torch.cat(pieces, dim=-1)
        scale = max(offline.audio_values.abs().max().item(), 1e-6)
        torch.testing.assert_close(streamed, offline.audio_values, rtol=1e-5, atol=1e-5 * scale)


@FUZZ
@given(
    layout=st.sampled_from(["delay", "local"]),
    batch=st.integers(1, 2),
    rows=st.integers(0, 24),
    prompt_length=st.integers(-1, 26),
    num_quantizers=st.one_of(st.none(), st.integers(0, 5)),
    include_end_frame=st.booleans(),
    data=st.data(),
)
def test_decode_path(layout, batch, rows, prompt_length, num_quantizers, include_end_frame, data):
    processor = PROCESSORS[layout]
    specials = [processor.audio_start_token_id, processor.audio_end_token_id, processor.im_end_token_id,
                processor.audio_assistant_gen_slot_token_id, processor.audio_assistant_delay_slot_token_id,
                processor.pad_token_id, 72, 101]
    text = data.draw(st.lists(st.sampled_from(specials), min_size=batch * rows, max_size=batch * rows))
    code_values = st.one_of(st.integers(0, processor.audio_pad_code), st.just(processor.audio_pad_code))
    codes = data.draw(st.lists(code_values, min_size=batch * rows * processor.n_vq,
                               max_size=batch * rows * processor.n_vq))
    sequences = torch.empty(batch, rows, 1 + processor.n_vq, dtype=torch.long)
    sequences[..., 0] = torch.tensor(text, dtype=torch.long).view(batch, rows)
    sequences[..., 1:] = torch.tensor(codes, dtype=torch.long).view(batch, rows, processor.n_vq)
    try:
        results = processor.decode_generation(
            sequences, prompt_length=prompt_length, num_quantizers=num_quantizers,
            include_end_frame=include_end_frame,
        )
    except CLEAN_ERRORS as error:
        assert str(error)
        return
    assert len(results) == batch
    for speech in results:
        assert len(speech.audio) == len(speech.audio_codes)
        for audio, segment in zip(speech.audio, speech.audio_codes):
            assert audio.shape == (segment.shape[0] * CODEC.config.downsample_rate,)
            assert bool(((segment >= 0) & (segment < processor.audio_pad_code)).all())
