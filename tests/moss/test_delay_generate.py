"""Delay generator: greedy parity with every recorded trajectory, sampling settings, caches, streaming, errors."""

from pathlib import Path

import pytest
import torch
from codectts.configuration.moss.delay import DELAY_GENERATION_PRESETS, delay_generation_defaults
from codectts.conversion import convert_checkpoint
from codectts.modeling.token_selection import (
    ChannelSampling,
    RepetitionHistory,
    apply_repetition_penalty,
    select_tokens,
    top_k_filter,
    top_p_filter,
)
from codectts.modeling.moss.delay import CodecTTSDelayForConditionalGeneration
from codectts.modeling.moss.delay_pattern import revert_delay_pattern
from codectts.modeling.moss.generation_delay import DelayAudioFrameStreamer
from safetensors.torch import load_file

GOLDEN = Path(__file__).parents[1] / "fixtures" / "golden" / "moss_tts_delay"
GOLDEN_OUTPUTS = load_file(GOLDEN / "outputs_eager.safetensors")
# every recorded trajectory: "gen_{prompt}[_variant].max{N}"
TRAJECTORIES = sorted({k.rsplit(".b", 1)[0] for k in GOLDEN_OUTPUTS if k.startswith("gen_") and k.endswith(".ids")})
GREEDY = dict(do_sample=False, audio_do_sample=False)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    out = tmp_path_factory.mktemp("delay") / "converted"
    convert_checkpoint(GOLDEN / "model", out)
    return out


@pytest.fixture(scope="module")
def model(converted):
    return CodecTTSDelayForConditionalGeneration.from_pretrained(converted, attn_implementation="eager").eval()


def prompt(name):
    return GOLDEN_OUTPUTS[f"prompt_{name}.input_ids"], GOLDEN_OUTPUTS[f"prompt_{name}.attention_mask"].long()


def reference_contract(sequences, prompt_rows, im_start_id):
    """The original `generate` return value, `(start_length, rows)` per sequence, computed from our `sequences`:
    rows from the last `<|im_start|>` of the prompt + 3 (skipping `<|im_start|>assistant\\n`)."""
    out = []
    for row in sequences:
        starts = (row[:prompt_rows, 0] == im_start_id).nonzero().flatten()
        begin = int(starts[-1]) + 3 if len(starts) else 2
        out.append((prompt_rows - begin, row[begin:]))
    return out


@pytest.mark.parametrize("key", TRAJECTORIES)
def test_greedy_trajectories_match_reference(model, key):
    name, max_new = key.split(".max")
    ids, mask = prompt(name[4:].split("_")[0])
    extra = {}
    if name.endswith("rep1p3"):  # recorded with audio_repetition_penalty=1.3 (applied before argmax)
        extra = dict(audio_repetition_penalty=1.3, audio_repetition_penalty_scope="reference")
    out = model.generate(
        ids, attention_mask=mask, max_new_tokens=int(max_new), return_dict_in_generate=True, output_logits=True,
        **GREEDY, **extra,
    )  # fmt: skip
    steps = out.sequences.shape[1] - ids.shape[1]
    assert steps <= int(max_new) and len(out.logits) == len(out.audio_logits) == steps
    for b, (start_length, rows) in enumerate(
        reference_contract(out.sequences, ids.shape[1], model.config.im_start_token_id)
    ):
        assert start_length == int(GOLDEN_OUTPUTS[f"{key}.b{b}.start_length"])
        assert torch.equal(rows, GOLDEN_OUTPUTS[f"{key}.b{b}.ids"])
        if f"{key}.b{b}.dedelayed_audio" in GOLDEN_OUTPUTS:
            assert torch.equal(revert_delay_pattern(rows[:, 1:]), GOLDEN_OUTPUTS[f"{key}.b{b}.dedelayed_audio"])
    if f"{key}.step_audio_logits" in GOLDEN_OUTPUTS:
        # raw head outputs of every decode step, compared while a sequence is unfinished (afterwards the reference
        # masks its rows out of attention and the logits are meaningless)
        text = torch.stack(out.logits, 1).topk(16, dim=-1).values
        audio = torch.stack(out.audio_logits, 1)
        expected_audio = GOLDEN_OUTPUTS[f"{key}.step_audio_logits"]
        for b in range(ids.shape[0]):
            live = steps
            im_end = (out.sequences[b, ids.shape[1] :, 0] == model.config.im_end_token_id).nonzero().flatten()
            if len(im_end):
                live = int(im_end[0]) + 1
            torch.testing.assert_close(
                text[b, :live], GOLDEN_OUTPUTS[f"{key}.step_text_top16_values"][b, :live], atol=1e-4, rtol=0
            )
            finite = ~expected_audio[b, :live].isneginf()
            assert torch.equal(audio[b, :live].isneginf(), ~finite)
            torch.testing.assert_close(audio[b, :live][finite], expected_audio[b, :live][finite], atol=1e-4, rtol=0)


def test_finished_rows_continue_as_pad_rows(model):
    ids, mask = prompt("AC")
    sequences = model.generate(ids, attention_mask=mask, max_new_tokens=40, **GREEDY)
    generated = sequences[0, ids.shape[1] :]
    end = int((generated[:, 0] == model.config.im_end_token_id).nonzero()[0])
    assert end < 39
    assert (generated[end + 1 :, 0] == model.config.pad_token_id).all()
    assert (generated[end + 1 :, 1:] == model.config.audio_pad_code).all()


def test_sdpa_gives_the_same_greedy_tokens(converted, model):
    sdpa = CodecTTSDelayForConditionalGeneration.from_pretrained(converted, attn_implementation="sdpa")
    ids, mask = prompt("AC")
    assert torch.equal(
        sdpa.generate(ids, attention_mask=mask, max_new_tokens=40, **GREEDY),
        model.generate(ids, attention_mask=mask, max_new_tokens=40, **GREEDY),
    )


def test_static_cache_matches_dynamic_cache(model):
    ids, mask = prompt("AC")
    dynamic = model.generate(ids, attention_mask=mask, max_new_tokens=25, **GREEDY)
    static = model.generate(ids, attention_mask=mask, max_new_tokens=25, cache_implementation="static", **GREEDY)
    assert torch.equal(static, dynamic)


def test_per_sequence_penalty_batched_equals_unbatched(model):
    """Our default penalty history is per sequence, so batching must not change any sequence's tokens."""
    settings = dict(max_new_tokens=30, audio_repetition_penalty=1.3, **GREEDY)
    ids, mask = prompt("AC")
    batched = model.generate(ids, attention_mask=mask, **settings)
    for b, name in enumerate("AC"):
        single_ids, single_mask = prompt(name)
        single = model.generate(single_ids, attention_mask=single_mask, **settings)
        rows = single.shape[1] - single_ids.shape[1]
        assert torch.equal(batched[b, ids.shape[1] : ids.shape[1] + rows], single[0, single_ids.shape[1] :])
    unpenalised = model.generate(ids, attention_mask=mask, max_new_tokens=30, **GREEDY)
    assert not torch.equal(batched, unpenalised)  # the penalty is active on this trajectory


def test_top_k_one_sampling_equals_greedy(model):
    ids, mask = prompt("AC")
    greedy = model.generate(ids, attention_mask=mask, max_new_tokens=20, **GREEDY)
    torch.manual_seed(0)
    sampled = model.generate(
        ids, attention_mask=mask, max_new_tokens=20, do_sample=True, temperature=0.7, top_k=1,
        audio_temperature=1.7, audio_top_k=1, audio_top_p=0.8,
    )  # fmt: skip
    assert torch.equal(sampled, greedy)


def assert_follows_the_grammar(prompt_text, generated, config):
    """Scalar re-statement of the reference rules (spec 5.1), checked row by row on one sequence."""
    n, pad = config.n_vq, config.audio_pad_code
    gen, delay, start, end = (config.audio_assistant_gen_slot_token_id, config.audio_assistant_delay_slot_token_id,
                              config.audio_start_token_id, config.audio_end_token_id)  # fmt: skip
    text = prompt_text.tolist()
    starts = [i for i, t in enumerate(text) if t == start]
    in_audio = bool(starts) and text[-1] in (start, gen)
    audio_len = len(text) - starts[-1] if in_audio else 0
    flushed, stopped = -1, False
    for step, row in enumerate(generated.tolist()):
        token, codes = row[0], row[1:]
        if stopped:
            assert token == config.pad_token_id and codes == [pad] * n
            continue
        if 0 <= flushed < n:
            assert token == delay
        elif flushed == n:
            assert token == end
        else:
            assert token in (gen, delay) if in_audio else token not in (config.pad_token_id, gen, delay, end)
            assert not (step == 0 and token == delay) and not (step <= n and token == config.im_end_token_id)
        sampled = [j < audio_len and (flushed < 0 or j >= flushed) for j in range(n)]
        assert [c != pad for c in codes] == sampled, (step, row)
        audio_len = 0 if token == end else audio_len + (token in (start, gen, delay))
        flushed = flushed + 1 if flushed >= 0 else (1 if token == delay else -1)
        flushed = -1 if flushed > n else flushed
        in_audio = (in_audio or token == start) and token != end
        stopped = token == config.im_end_token_id


@pytest.mark.parametrize("name", ["A", "B", "C"])
def test_sampling_is_seeded_and_follows_the_grammar(model, name):
    ids, mask = prompt(name)
    runs = []
    for _ in range(2):
        torch.manual_seed(1234)
        runs.append(model.generate(ids, attention_mask=mask, max_new_tokens=30, do_sample=True, temperature=1.0))
    assert torch.equal(runs[0], runs[1])
    assert_follows_the_grammar(ids[0, :, 0], runs[0][0, ids.shape[1] :], model.config)


def test_greedy_reference_trajectories_follow_the_grammar(model):
    """The checker above agrees with the recorded trajectories (so it checks the rules, not our implementation)."""
    for key in TRAJECTORIES:
        ids, mask = prompt(key[4:].split(".max")[0].split("_")[0])
        for b in range(ids.shape[0]):
            rows = GOLDEN_OUTPUTS[f"{key}.b{b}.ids"]
            start_length = int(GOLDEN_OUTPUTS[f"{key}.b{b}.start_length"])
            assert_follows_the_grammar(ids[b, mask[b].bool(), 0], rows[start_length:], model.config)


def test_streamer_receives_every_frame_as_soon_as_complete(model):
    ids, mask = prompt("A")
    n = model.config.n_vq
    arrivals = []

    class Recorder(DelayAudioFrameStreamer):
        def put(self, value):
            super().put(value)
            arrivals.append(sum(len(f) for f in self.frames))

    streamer = Recorder(n, model.config.audio_pad_code)
    sequences = model.generate(ids, attention_mask=mask, max_new_tokens=40, streamer=streamer, **GREEDY)
    assert streamer.ended
    generated = sequences[0, ids.shape[1] :]
    frames = revert_delay_pattern(torch.cat([ids[0, -(n - 1) :, 1:], generated[:, 1:]]))
    expected = frames[(frames != model.config.audio_pad_code).any(-1)]
    assert torch.equal(torch.stack(streamer.frames[0]), expected)
    # a frame is emitted in the very step that writes its last codebook: row r completes frame r - (n - 1)
    completed = [(frames[: r + 1] != model.config.audio_pad_code).any(-1).sum().item() for r in range(len(generated))]
    assert arrivals[1:] == completed  # arrivals[0]: the prompt


def test_presets_and_saved_generation_config(converted, model):
    assert model.generation_config.audio_temperature == DELAY_GENERATION_PRESETS["moss-tts"]["audio_temperature"]
    assert model.generation_config.eos_token_id == model.config.im_end_token_id
    ttsd = delay_generation_defaults("moss-ttsd")
    assert (ttsd["audio_temperature"], ttsd["audio_top_p"], ttsd["audio_top_k"]) == (1.1, 0.9, 50)
    with pytest.raises(ValueError, match="unknown preset"):
        delay_generation_defaults("moss-unknown")


def test_bad_generate_inputs(model):
    ids, mask = prompt("A")
    with pytest.raises(ValueError, match=rf"\[batch, rows, {model.config.num_channels}\]"):
        model.generate(ids[..., :-1], max_new_tokens=2)
    with pytest.raises(ValueError, match="audio codes must be in"):
        bad = ids.clone()
        bad[0, -1, 1] = model.config.audio_vocab_size + 1
        model.generate(bad, max_new_tokens=2)
    with pytest.raises(ValueError, match="empty"):
        model.generate(ids[:, :0], max_new_tokens=2)
    with pytest.raises(ValueError, match="attention_mask must have shape"):
        model.generate(ids, attention_mask=mask[:, 1:], max_new_tokens=2)
    with pytest.raises(ValueError, match="pad prompts on the left"):
        right = mask.clone()
        right[0, -1] = 0
        model.generate(ids, attention_mask=right, max_new_tokens=2)
    with pytest.raises(ValueError, match="num_beams"):
        model.generate(ids, num_beams=2, max_new_tokens=2)
    with pytest.raises(ValueError, match="audio_top_k must be a non-negative int"):
        model.generate(ids, max_new_tokens=2, do_sample=True, audio_top_k=-1)
    with pytest.raises(ValueError, match="audio_repetition_penalty_scope"):
        model.generate(ids, max_new_tokens=2, audio_repetition_penalty_scope="batch")


# --- sampling helpers against the reference `inference_utils` outputs ---------------------------------------------

SAMPLING = load_file(GOLDEN / "sampling_utils.safetensors")


def test_top_k_and_top_p_match_reference():
    # the Delay reference's variants: exactly k entries (ties dropped), exclusive-cumsum nucleus
    logits = SAMPLING["logits"]
    assert torch.equal(top_k_filter(logits, 5, ties="drop"), SAMPLING["top_k5"])
    assert torch.equal(top_p_filter(logits, 0.8, rule="exclusive"), SAMPLING["top_p0p8"])
    assert torch.equal(top_p_filter(logits, 0.8, rule="exclusive"), SAMPLING["top_p_opt0p8"])


def _penalised(logits, history, penalty=1.5):
    return apply_repetition_penalty(logits, RepetitionHistory(history, logits.shape[-1]).mask(), penalty)


def test_repetition_penalty_matches_reference_semantics():
    # reference 2-D call: every row penalised with the union of all previous tokens
    logits, previous = SAMPLING["logits"], SAMPLING["rep_prev_2d"].reshape(1, -1, 1)
    history = previous.expand(logits.shape[0], -1, -1)
    assert torch.equal(_penalised(logits[:, None], history)[:, 0], SAMPLING["rep_penalty1p5_2d"])
    greedy = ChannelSampling(do_sample=False, repetition_penalty=1.5, penalize_greedy=True)
    seen = RepetitionHistory(history, logits.shape[-1]).mask()
    assert torch.equal(select_tokens(logits[:, None], greedy, seen=seen)[:, 0], SAMPLING["greedy_with_rep"])
    # reference 3-D call [B, heads, V]: head h penalised with the union over the batch of its own history, which is
    # our per-sequence penalty once every sequence is given the batch's concatenated history
    logits3, previous3 = SAMPLING["logits_3d"], SAMPLING["rep_prev_3d"]  # [B, H, V], [B, T, H]
    batch_history = previous3.reshape(1, -1, previous3.shape[-1]).expand(logits3.shape[0], -1, -1)
    assert torch.equal(_penalised(logits3, batch_history), SAMPLING["rep_penalty1p5_3d"])
    own = _penalised(logits3, previous3)
    assert not torch.equal(own, SAMPLING["rep_penalty1p5_3d"])  # per sequence differs from the batch union
