"""Pins the behaviour of the private transformers generation helpers our `_sample` overrides rely on.

CI runs this file on the minimum (5.0.0) and on the newest transformers release: a release that changes one of them
fails here by name instead of somewhere deep inside a generation test (or, worse, silently).
"""

from __future__ import annotations

import pytest
import torch
from codectts.modeling.compat import (
    CACHE_KWARG,
    cache_from_kwargs,
    decode_step_kwargs,
    prefill,
    update_model_kwargs_for_generation,
)
from codectts.processing.moss.processor import CodecTTSProcessor
from transformers import DynamicCache, GenerationConfig


@pytest.fixture(scope="module")
def delay_case(tiny_models):
    tokenizer, codec, delay, _ = tiny_models
    processor = CodecTTSProcessor.from_model_config(delay.config, tokenizer, codec)
    inputs = processor([[processor.build_user_message(text="Hi there")]], mode="generation")
    return delay, dict(inputs)


def test_prefill_runs_the_prompt_and_fills_the_cache(delay_case):
    model, inputs = delay_case
    config = GenerationConfig(max_new_tokens=2, do_sample=False)
    model_kwargs = {"attention_mask": inputs["attention_mask"], CACHE_KWARG: DynamicCache(), "use_cache": True}
    with torch.no_grad():
        outputs = prefill(model, inputs["input_ids"], config, model_kwargs)
    rows = inputs["input_ids"].shape[1]
    assert outputs.cache.get_seq_length() == rows
    with torch.no_grad():
        full = model(**inputs, use_cache=False)
    torch.testing.assert_close(outputs.logits[:, -1], full.logits[:, -1])


def test_update_and_prepare_inputs_carry_the_cache_and_the_new_row(delay_case):
    model, inputs = delay_case
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    with torch.no_grad():
        outputs = model(input_ids=ids, attention_mask=mask, cache=DynamicCache(), use_cache=True)
    # what generate holds after the prefill (releases before 5.24 also track cache_position)
    model_kwargs = {"attention_mask": mask, "use_cache": True, "cache_position": torch.arange(ids.shape[1])}
    model_kwargs = update_model_kwargs_for_generation(model, outputs, model_kwargs)
    assert cache_from_kwargs(model_kwargs) is outputs.cache
    assert model_kwargs["attention_mask"].shape == (1, ids.shape[1] + 1)  # one column per new row

    grown = torch.cat([ids, ids[:, -1:]], dim=1)
    model_inputs = model.prepare_inputs_for_generation(grown, **decode_step_kwargs(model), **model_kwargs)
    assert model_inputs["input_ids"].shape[1] == 1  # only the new row goes through the model
    assert torch.equal(model_inputs["input_ids"], grown[:, -1:])
    assert cache_from_kwargs(model_inputs) is outputs.cache


def test_decode_helpers_used_by_the_delay_loop_exist(delay_case):
    model, _ = delay_case
    config = GenerationConfig(max_new_tokens=2)
    assert model._valid_auto_compile_criteria({CACHE_KWARG: DynamicCache()}, config) is False  # no static cache
    with model._optimize_model_for_decode():
        pass
