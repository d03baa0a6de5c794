"""Shared fixtures of the MOSS tests: tiny random-weight models (built once per session) and a two-prompt batch."""

from __future__ import annotations

import pytest
from codectts.demo import build_tiny_models
from codectts.processing.moss.processor import CodecTTSProcessor


@pytest.fixture(scope="session")
def tiny_models():
    """``(tokenizer, codec, delay, local)`` with 4 codebooks (``codectts.demo.build_tiny_models(seed=0, n_vq=4)``)."""
    return build_tiny_models(seed=0, n_vq=4)


@pytest.fixture(scope="session")
def two_prompt_batch(tiny_models):
    """``family -> (model, inputs, bias)``: a two-prompt batch; the bias makes random text heads open audio."""
    return lambda family: _two_prompt_batch(tiny_models, family)


def _two_prompt_batch(tiny_models, family: str):
    tokenizer, codec, delay, local = tiny_models
    model = delay if family == "delay" else local
    processor = CodecTTSProcessor.from_model_config(model.config, tokenizer, codec)
    inputs = processor(
        [[processor.build_user_message(text="Hi there")], [processor.build_user_message(text="A longer sentence")]],
        mode="generation",
    )
    ids = model.config
    bias = {(ids.audio_start_token_id,): 10.0, (ids.audio_assistant_gen_slot_token_id,): 6.0}
    return model, dict(inputs), bias
