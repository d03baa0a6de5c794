"""The KV cache is never silently dropped, whatever the transformers release calls it (`cache` / `past_key_values`).

transformers 5.24 renamed the cache keyword and output field; a forward that looked only for the old name then ran
without its cache and produced garbage with no error. These tests recompute every step without a cache and compare.
"""

from __future__ import annotations

import pytest
import torch
from codectts.modeling.compat import CACHE_KWARG
from transformers import DynamicCache

STEPS = 5


@pytest.fixture(scope="module", params=["delay", "local"])
def case(request, two_prompt_batch):
    return (request.param, *two_prompt_batch(request.param))


def _full_logits(model, input_ids, attention_mask, labels=None):
    with torch.no_grad():
        return model(input_ids=input_ids, attention_mask=attention_mask, labels=labels, use_cache=False)


@pytest.mark.parametrize("name", ["cache", "past_key_values"])
def test_forward_uses_the_cache_under_either_name(case, name):
    family, model, inputs, _ = case
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    with torch.no_grad():
        first = model(input_ids=ids[:, :-1], attention_mask=mask[:, :-1], **{name: DynamicCache()}, use_cache=True)
        assert first.cache is not None and first.past_key_values is first.cache
        step = model(input_ids=ids[:, -1:], attention_mask=mask, **{name: first.cache}, use_cache=True)
    full = _full_logits(model, ids, mask)
    torch.testing.assert_close(step.logits[:, -1], full.logits[:, -1], atol=1e-4, rtol=1e-4)
    if family == "delay":
        torch.testing.assert_close(step.audio_logits[:, -1], full.audio_logits[:, -1], atol=1e-4, rtol=1e-4)
    # without the cache the last row alone gives different logits: the comparison above can fail
    with torch.no_grad():
        alone = model(input_ids=ids[:, -1:], attention_mask=mask[:, -1:], use_cache=False)
    assert not torch.allclose(alone.logits[:, -1], full.logits[:, -1], atol=1e-3)


def test_two_different_caches_are_refused(case):
    _, model, inputs, _ = case
    with pytest.raises(ValueError, match="both cache= and past_key_values="):
        model(input_ids=inputs["input_ids"], cache=DynamicCache(), past_key_values=DynamicCache())


def test_greedy_generation_with_cache_equals_recomputation_without_it(case):
    family, model, inputs, bias = case
    prompt = inputs["input_ids"].shape[1]
    with torch.no_grad():
        out = model.generate(
            **inputs, max_new_tokens=STEPS, do_sample=False, sequence_bias=bias, return_dict_in_generate=True,
            output_logits=family == "delay",
        )  # fmt: skip
    sequences = out.sequences
    assert sequences.shape[1] == prompt + STEPS
    assert getattr(out, CACHE_KWARG) is not None
    mask = torch.cat([inputs["attention_mask"], inputs["attention_mask"].new_ones(sequences.shape[0], STEPS)], dim=1)
    if family == "delay":
        # the raw text logits of every step equal a cache-free forward over the rows so far
        for step, logits in enumerate(out.logits):
            rows = prompt + step
            full = _full_logits(model, sequences[:, :rows], mask[:, :rows]).logits[:, -1]
            torch.testing.assert_close(logits, full, atol=1e-4, rtol=1e-4)
    else:
        # teacher-forced forward without a cache: every generated channel is the argmax of its recomputed logits
        labels = sequences[:, 1:].clone()
        full = _full_logits(model, sequences[:, :-1], mask[:, :-1], labels=labels)
        pad = model.config.audio_pad_code
        generated = slice(prompt - 1, None)
        audio = full.audio_logits[:, generated].clone()
        audio[..., pad] = float("-inf")
        text = full.logits[:, generated].clone()
        for (token,), value in bias.items():  # the sequence_bias that generate applied to the text channel
            text[..., token] += value
        text_choice = text.argmax(-1)
        audio_choice = audio.argmax(-1)
        target = labels[:, generated]
        live = target[..., 0] != model.config.audio_end_token_id  # the end frame's codes are replaced by pad
        assert torch.equal(text_choice, target[..., 0])
        assert torch.equal(audio_choice[live], target[..., 1:][live])
