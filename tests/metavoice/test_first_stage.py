"""First stage: logits/loss parity with the original and every recorded greedy (top_k=1) trajectory, with and
without KV cache (dynamic and static) and with guidance."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "golden" / "metavoice" / "first_stage"
INFO = json.loads((GOLDEN / "meta.json").read_text())["info"]

OUT = load_file(str(GOLDEN / "outputs.safetensors"))
SPEAKERS = OUT["inputs.speaker_embs"]
GUIDANCE = {0: None, 1: (3.0, 1.0), 2: (2.0, 1.5)}  # the recording's index -> guidance_scale


def original_labels(targets: torch.Tensor) -> torch.Tensor:
    """The original's pre-shifted targets (ignore -1) -> transformers-style unshifted labels (ignore -100)."""
    shifted = targets.masked_fill(targets == -1, -100)
    return torch.cat([torch.full_like(shifted[:, :1], -100), shifted[:, :-1]], dim=1)


def test_logits_and_loss_match_the_original(model):
    idx = OUT["forward.idx"][:, 0]
    out = model.first_stage(
        idx, speaker_embeds=SPEAKERS[: idx.shape[0]], labels=original_labels(OUT["forward.targets"][:, 0])
    )
    torch.testing.assert_close(out.logits, OUT["forward.logits"], atol=1e-5, rtol=0)
    torch.testing.assert_close(out.loss, OUT["forward.loss"], atol=1e-5, rtol=0)
    torch.testing.assert_close(out.logits[:, -1:], OUT["forward_last.logits"], atol=1e-5, rtol=0)


def test_no_speaker_and_zero_speaker_rows(model):
    idx = OUT["forward.idx"][:, 0]
    logits = model.first_stage(idx).logits
    assert torch.equal(logits.argmax(-1), OUT["forward_nospk.argmax"])
    torch.testing.assert_close(logits.logsumexp(-1), OUT["forward_nospk.logsumexp"], atol=1e-5, rtol=0)
    torch.testing.assert_close(logits[..., OUT["forward_nospk.cols"]], OUT["forward_nospk.at_cols"], atol=1e-5, rtol=0)
    # the original's CFG path: speaker list [spk0, None] = a zero speaker term for row 1
    speakers = torch.stack([SPEAKERS[0], torch.zeros_like(SPEAKERS[0])])
    last = model.first_stage(idx, speaker_embeds=speakers, logits_to_keep=1).logits
    torch.testing.assert_close(last, OUT["forward_last_listspk.logits"], atol=1e-5, rtol=0)


def test_fast_path_logits(model):
    idx = OUT["fast_forward.idx"]
    speakers = torch.stack([SPEAKERS[0], torch.zeros_like(SPEAKERS[0])])
    logits = model.first_stage(idx.repeat(2, 1), speaker_embeds=speakers).logits
    torch.testing.assert_close(logits, OUT["fast_forward.logits"], atol=1e-5, rtol=0)


def recorded_trajectories():
    """(guidance index, batch, new tokens) of every `gen.g*.kv*.b*.n*` recording (kv0 and kv1 are equal)."""
    cases = set()
    for key in OUT:
        if key.startswith("gen.g") and key.endswith(".tokens"):
            g, _, b, n = key.split(".")[1:5]
            cases.add((int(g[1:]), int(b[1:]), int(n[1:])))
    return sorted(cases)


def generate(model, prompts: torch.Tensor, **kwargs) -> torch.Tensor:
    return model.first_stage.generate(
        prompts,
        torch.ones_like(prompts),
        speaker_embeds=SPEAKERS[: prompts.shape[0]],
        do_sample=True,
        top_k=1,
        temperature=1.0,
        **kwargs,
    )


@pytest.mark.parametrize("g,batch,new", recorded_trajectories())
def test_every_recorded_trajectory(model, g, batch, new):
    key = f"gen.g{g}.kv0.b{batch}.n{new}"
    prompts = OUT[f"{key}.input"][:, 0]
    tokens = generate(model, prompts, guidance_scale=GUIDANCE[g], max_new_tokens=new)
    for cache in ("kv0", "kv1"):
        reference = OUT.get(f"gen.g{g}.{cache}.b{batch}.n{new}.tokens")
        if reference is not None:
            assert torch.equal(tokens, reference[:, 0]), (key, cache)


@pytest.mark.parametrize("g", sorted(GUIDANCE))
def test_cache_modes_give_the_same_tokens(model, g):
    key = f"gen.g{g}.kv0.b2.n40"
    prompts = OUT[f"{key}.input"][:, 0]
    for mode in ({"use_cache": False}, {"use_cache": True, "cache_implementation": "static"}):
        tokens = generate(model, prompts, guidance_scale=GUIDANCE[g], max_new_tokens=40, **mode)
        assert torch.equal(tokens, OUT[f"{key}.tokens"][:, 0]), mode
    greedy = model.first_stage.generate(
        prompts, speaker_embeds=SPEAKERS[:2], guidance_scale=GUIDANCE[g], max_new_tokens=40, do_sample=False
    )
    assert torch.equal(greedy, OUT[f"{key}.tokens"][:, 0])


def test_fast_path_trajectories_scalar_guidance_and_full_context(model):
    for key in sorted(k for k in OUT if k.startswith("fast_gen.g") and k.endswith(".tokens")):
        parts = key.removeprefix("fast_gen.g").removesuffix(".tokens")
        scale, new = parts.rsplit(".n", 1)
        reference = OUT[key].long()
        prompt = OUT["gen.g1.kv0.b1.n8.input"][:, 0]
        max_new = None if new == "None" else int(new)
        tokens = generate(model, prompt, guidance_scale=float(scale), max_new_tokens=max_new)[0]
        # the fast path stops right after end-of-audio; we fill the rest of the row with end-of-audio
        assert torch.equal(tokens[: reference.shape[0]], reference), key
        assert bool((tokens[reference.shape[0] :] == model.config.first_stage_config.end_of_audio_token_id).all())
        if max_new is None:
            assert tokens.shape[0] == model.config.first_stage_config.max_position_embeddings


def test_left_padded_batch_equals_rows_alone_and_original_e2e(model, processor):
    """Prompts of different lengths (e2e recording: right-padded in the original, left-padded here)."""
    prompts = OUT["e2e.prompt_ids"][:, 0]
    lengths = INFO["e2e_prompt_seq_lens"]
    rows = [prompts[b, :n] for b, n in enumerate(lengths)]
    width = max(lengths)
    eoa = model.config.first_stage_config.end_of_audio_token_id
    padded = torch.stack([torch.cat([torch.full((width - len(r),), eoa), r]) for r in rows])
    mask = torch.stack([torch.cat([torch.zeros(width - len(r)), torch.ones(len(r))]).long() for r in rows])
    for use_cache in (False, True):
        tokens = model.first_stage.generate(
            padded,
            mask,
            speaker_embeds=SPEAKERS[:2],
            guidance_scale=(3.0, 1.0),
            max_new_tokens=40,
            do_sample=True,
            top_k=1,
            use_cache=use_cache,
        )
        for b, row in enumerate(rows):
            raw = OUT[f"e2e.{'kv' if use_cache else 'nokv'}.b{b}.raw_tokens"][0]
            mine = torch.cat([row, tokens[b, width:]])[: raw.shape[0]]
            assert torch.equal(mine, raw), (b, use_cache)
            # the original adapter on the same row
            text_ids, codes = processor.deinterleave_first_stage(raw.tolist())
            assert codes == OUT[f"e2e.{'kv' if use_cache else 'nokv'}.b{b}.audio_ids"].tolist()
            assert text_ids == INFO["e2e"][f"{'kv' if use_cache else 'nokv'}.b{b}"]["text_ids"]
    alone = model.first_stage.generate(
        rows[1][None], speaker_embeds=SPEAKERS[1:2], guidance_scale=(3.0, 1.0), max_new_tokens=40, do_sample=False
    )
    assert torch.equal(alone[0, len(rows[1]) :], tokens[1, width:])


def test_sampling_warpers_match_the_fast_path(model):
    """transformers' TopP warper keeps exactly the fast path's nucleus."""
    from transformers import TopPLogitsWarper

    logits = OUT["sampling.logits"]
    for p in (0.95, 0.5):
        warped = TopPLogitsWarper(p)(None, logits[:1].clone())[0]
        kept = torch.isfinite(warped)
        assert torch.equal(kept, OUT[f"sampling.fast_top_p_{p}_row0"] > float("-inf"))


def test_bad_input(model):
    config = model.config.first_stage_config
    too_long = torch.full((1, config.max_position_embeddings), config.end_of_text_token_id)
    with pytest.raises(ValueError, match="context"):
        model.first_stage.generate(too_long, max_new_tokens=4)
    with pytest.raises(ValueError, match="speaker_embeds"):
        model.first_stage.generate(too_long[:, :4], guidance_scale=3.0, max_new_tokens=4)
    with pytest.raises(ValueError, match="guidance_scale"):
        model.first_stage.generate(too_long[:, :4], speaker_embeds=SPEAKERS[:1], guidance_scale=0.5, max_new_tokens=4)
    with pytest.raises(ValueError, match="speaker_embeds"):
        model.first_stage(too_long[:, :4], speaker_embeds=SPEAKERS[:2])
    with pytest.raises(ValueError, match="input_ids"):
        model.first_stage.generate(too_long[:, :4] + config.vocab_size, max_new_tokens=4)


def test_training_step_reduces_the_loss(converted):
    from transformers import AutoModel

    from codectts.modeling.metavoice import MetaVoiceFirstStageModel

    first = AutoModel.from_pretrained(converted).first_stage
    assert isinstance(first, MetaVoiceFirstStageModel)
    first.train()
    idx = OUT["forward.idx"][:, 0]
    labels = original_labels(OUT["forward.targets"][:, 0])
    optimizer = torch.optim.SGD(first.parameters(), lr=0.05)
    losses = []
    for _ in range(3):
        loss = first(idx, speaker_embeds=SPEAKERS[:2], labels=labels).loss
        losses.append(loss.item())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert losses[-1] < losses[0]


def test_cache_kwarg_names_and_generation_config_guidance(model):
    """`cache=` and `past_key_values=` are the same argument; transformers' float `guidance_scale` in a
    GenerationConfig means (g, 1.0) and never reaches transformers' own CFG processor."""
    from transformers import DynamicCache, GenerationConfig

    idx = OUT["forward.idx"][:1, 0]
    full = model.first_stage(idx, speaker_embeds=SPEAKERS[:1]).logits
    for name in ("cache", "past_key_values"):
        cache = DynamicCache()
        head = model.first_stage(idx[:, :-4], speaker_embeds=SPEAKERS[:1], use_cache=True, **{name: cache})
        tail = model.first_stage(idx[:, -4:], speaker_embeds=SPEAKERS[:1], use_cache=True, **{name: head.cache})
        torch.testing.assert_close(tail.logits, full[:, -4:], atol=1e-5, rtol=0)
        assert "past_key_values" not in tail.keys()
    with pytest.raises(ValueError, match="cache"):
        model.first_stage(idx, cache=DynamicCache(), past_key_values=DynamicCache())
    prompt = OUT["gen.g1.kv0.b1.n8.input"][:, 0]
    config = GenerationConfig(guidance_scale=3.0, max_new_tokens=8, do_sample=False)
    tokens = model.first_stage.generate(prompt, speaker_embeds=SPEAKERS[:1], generation_config=config)
    assert torch.equal(tokens, OUT["gen.g1.kv0.b1.n8.tokens"][:, 0])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="torch.compile of the decode step is exercised on CUDA")
def test_compiled_static_cache_gives_the_same_tokens(model):
    """Static cache + torch.compile(fullgraph=True) of the decode step (CUDA graphs) = the recorded greedy tokens.
    (Also checked on CPU with CompileConfig._compile_all_devices; too slow for the CPU suite.)"""
    from transformers import CompileConfig

    first = model.first_stage.to("cuda")
    try:
        key = "gen.g2.kv0.b2.n40"
        prompts = OUT[f"{key}.input"][:, 0].cuda()
        tokens = first.generate(
            prompts,
            speaker_embeds=SPEAKERS[:2].cuda(),
            guidance_scale=GUIDANCE[2],
            max_new_tokens=40,
            do_sample=False,
            cache_implementation="static",
            compile_config=CompileConfig(fullgraph=True),
        )
        assert torch.equal(tokens.cpu(), OUT[f"{key}.tokens"][:, 0])
    finally:
        first.to("cpu")


def test_batch_order_does_not_matter(model):
    """`gen.bs1_of2`: the two prompts (and their voices) in reverse order, generated one at a time by the original."""
    prompts = OUT["gen.bs1_of2.input"][:, 0]
    speakers = SPEAKERS[[1, 0]]
    tokens = model.first_stage.generate(
        prompts, speaker_embeds=speakers, guidance_scale=(3.0, 1.0), max_new_tokens=40, do_sample=False
    )
    assert torch.equal(tokens, OUT["gen.bs1_of2.tokens"][:, 0])


def test_rows_that_end_early_are_filled_with_end_of_audio(model):
    """Alone, the second prompt reaches end-of-audio before its budget: the output still has max_new_tokens
    positions (end-of-audio after the end), like the original's output buffer."""
    key = "gen.g1.kv0.b2.n40"
    reference = OUT[f"{key}.tokens"][1:, 0]
    eoa = model.config.first_stage_config.end_of_audio_token_id
    assert int((reference == eoa).sum()) > 1  # the recording ends early
    for return_dict in (False, True):
        out = model.first_stage.generate(
            OUT[f"{key}.input"][1:, 0],
            speaker_embeds=SPEAKERS[1:2],
            guidance_scale=(3.0, 1.0),
            max_new_tokens=40,
            do_sample=False,
            return_dict_in_generate=return_dict,
        )
        tokens = out.sequences if return_dict else out
        assert torch.equal(tokens, reference)
