"""MOSS-TTS-Realtime generation: every greedy / top-k=1 trajectory of the non-streaming and streaming entry points,
chunked pushes, multi-turn KV reuse, the shared frame step, audio decoding (streaming == offline) and the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import codectts  # noqa: F401  (registers the Auto classes)
from codectts.conversion import convert_checkpoint
from codectts.modeling.moss.realtime_generation import (
    RealtimeFrameStepper,
    RealtimeSampling,
    RealtimeSessionClosedError,
)

GOLDEN = Path(__file__).parents[1] / "fixtures" / "golden"
FIXTURE = GOLDEN / "moss_tts_realtime"
GREEDY_STREAM = dict(do_sample=False, repetition_penalty=1.0)


def build_realtime_tokenizer(dst: Path) -> Path:
    """The Realtime fixture tokenizer: the shared synthetic tokenizer with ids 151654/151655 renamed (README)."""
    dst.mkdir(parents=True, exist_ok=True)
    text = (GOLDEN / "tokenizer" / "tokenizer.json").read_text(encoding="utf-8")
    for old, new in (('"<|audio_user_slot|>"', '"<|audio_pad|>"'), ('"<|image_pad|>"', '"<|text_pad|>"')):
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    (dst / "tokenizer.json").write_text(text, encoding="utf-8")
    for name in ("tokenizer_config.json", "chat_template.jinja"):
        shutil.copy(GOLDEN / "tokenizer_realtime" / name, dst / name)
    return dst


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The tiny model's per-frame ops are microseconds: intra-op threads only add spin/wake-up overhead (10x on a
    busy 2-core runner). Restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def golden():
    return load_file(FIXTURE / "outputs.safetensors")


@pytest.fixture(scope="module")
def meta():
    return json.loads((FIXTURE / "meta.json").read_text())


@pytest.fixture(scope="module")
def info(meta):
    return meta["info_eager"]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("realtime_gen")
    out = root / "converted"
    convert_checkpoint(FIXTURE / "model", out, tokenizer=build_realtime_tokenizer(root / "tokenizer"))
    return out


@pytest.fixture(scope="module")
def model(bundle):
    from transformers import AutoModel

    return AutoModel.from_pretrained(bundle, attn_implementation="eager").eval()


@pytest.fixture(scope="module")
def processor(bundle):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(bundle)


def max_frames(meta) -> int:
    """The recorded runs used the original's max_length; our budget counts frame 0 too (+1)."""
    return meta["params"]["max_length"] + 1


# ---------------------------------------------------------------------------------------------------------- batch
GEN_CASES = ["A", "AS", "S", "A_rep1p1_w50", "A_rep1p3_w3", "A_topk1", "V"]


@pytest.mark.parametrize("name", GEN_CASES)
def test_generate_speech_matches_reference(model, processor, golden, info, meta, name):
    case = info["gen"][name]
    voice = None if case["voice"] is None else [golden["codes.ref_CT"].T] * len(case["texts"])
    frames = model.generate_speech(processor, case["texts"], voice_codes=voice, max_frames=max_frames(meta), **case["kwargs"])
    assert len(frames) == len(case["texts"])
    for b, ours in enumerate(frames):
        ref = golden[f"gen_{name}.b{b}.frames"]
        assert ours.shape == ref.shape and torch.equal(ours, ref), f"gen_{name} item {b}"
        assert ours.shape[0] == case["n_frames"][b]


def test_generate_speech_rows_and_states(model, processor, golden, info, meta):
    """The shared step feeds exactly the reference rows (left padding, masked finished rows) and states."""
    case = info["gen"]["AS"]
    trace = []
    original_init = RealtimeFrameStepper.__init__

    def traced_init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        self.trace = trace

    RealtimeFrameStepper.__init__ = traced_init
    try:
        model.generate_speech(processor, case["texts"], max_frames=max_frames(meta), **case["kwargs"])
    finally:
        RealtimeFrameStepper.__init__ = original_init
    rows = torch.cat([r for r, _ in trace], dim=1)
    ref_rows = golden["gen_AS.rows_fed"]
    assert rows.shape == ref_rows.shape and torch.equal(rows, ref_rows)
    states = torch.stack([h for _, h in trace], dim=1)
    ref_states = golden["gen_AS.step_last_hidden"]
    assert (states - ref_states).abs().max() < 1e-5


def test_generate_speech_item_budget_and_errors(model, processor, info):
    text = info["texts"]["text_A"]
    frames = model.generate_speech(processor, [text], max_frames=3, do_sample=False, repetition_penalty=1.0)
    assert frames[0].shape == (3, 16)  # capped before EOS: every produced frame is returned
    with pytest.raises(ValueError, match="non-empty list"):
        model.generate_speech(processor, text)
    with pytest.raises(ValueError, match="empty"):
        model.generate_speech(processor, ["hello", ""])
    with pytest.raises(ValueError, match="one LongTensor"):
        model.generate_speech(processor, [text], voice_codes=torch.zeros(3, 16, dtype=torch.long))
    with pytest.raises(ValueError, match="shape \\[T, 16\\]"):
        model.generate_speech(processor, [text], voice_codes=[torch.zeros(3, 15, dtype=torch.long)])
    with pytest.raises(ValueError, match="max_frames"):
        model.generate_speech(processor, [text], max_frames=0)
    with pytest.raises(ValueError, match="top_p"):
        model.generate_speech(processor, [text], top_p=1.5)
    with pytest.raises(TypeError, match="CodecTTSRealtimeProcessor"):
        model.generate_speech(processor.tokenizer, [text])


def test_sampling_is_seeded_and_windowed(model, processor, info):
    text = [info["texts"]["text_A"]] * 2
    kw = dict(do_sample=True, temperature=0.9, top_k=20, top_p=0.9, repetition_window=3, max_frames=6)
    a = model.generate_speech(processor, text, generator=torch.Generator().manual_seed(0), **kw)
    b = model.generate_speech(processor, text, generator=torch.Generator().manual_seed(0), **kw)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert all(((f >= 0) & (f < 1027)).all() for f in a)


# ---------------------------------------------------------------------------------------------------------- streaming
def expected_split(case) -> list[int]:
    """Frames per call of our API from the reference schedule: the EOS frame is dropped, drains belong to end_text."""
    out, total = [], 0
    for call, count in case["schedule"]:
        total += count
        if case["finished"] and total == case["n_frames"] and count:
            count -= 1
        if call == "drain":
            out[-1] += count
        else:
            out.append(count)
    return out


def run_calls(session, calls):
    results = [call(session) for call in calls]
    return results, torch.cat(results)


def reference_frames(golden, name, case):
    ref = golden[f"st_{name}.frames"]
    return ref[:-1] if case["finished"] else ref


def stream_calls(info, name):
    texts, ids, case = info["texts"], info["text_token_ids"], info["stream"][name]
    if name == "plain_tokens_all":
        pushes = [lambda s: s.push_text_ids(ids["text_A"])]
    elif name == "plain_tokens_chunks":
        pushes, start, tokens = [], 0, ids["text_A"]
        for size in case["chunks"] + [len(tokens)]:
            pushes.append(lambda s, part=tokens[start : start + size]: s.push_text_ids(part))
            start += size
            if start >= len(tokens):
                break
    elif name == "plain_text_deltas":
        pushes = [lambda s, d=d: s.push_text(d) for d in case["deltas"]]
    elif name == "plain_text_whole":
        pushes = [lambda s: s.push_text(texts["text_A"])]
    elif name == "short_tokens":
        pushes = [lambda s: s.push_text_ids(ids["text_short"])]
    elif name == "nosplit_text":
        pushes = [lambda s: s.push_text(texts["text_nosplit"])]
    elif name == "voice_user":
        pushes = [lambda s: s.push_text_ids(ids["text_B"])]
    else:  # pragma: no cover
        raise KeyError(name)
    return pushes + [lambda s: s.end_text()]


STREAM_CASES = [
    "plain_tokens_all", "plain_tokens_chunks", "plain_text_deltas", "plain_text_whole", "short_tokens",
    "nosplit_text", "voice_user",
]


@pytest.mark.parametrize("name", STREAM_CASES)
def test_streaming_session_matches_reference(model, processor, golden, info, meta, name):
    case = info["stream"][name]
    kwargs = {}
    if name == "voice_user":
        kwargs = dict(
            voice_codes=golden["codes.ref_CT"].T, user_text=info["texts"]["user_1"], user_audio_codes=golden["codes.user1"]
        )
    session = model.start_session(processor, max_frames=max_frames(meta), **GREEDY_STREAM, **kwargs)
    results, frames = run_calls(session, stream_calls(info, name))
    ref = reference_frames(golden, name, case)
    assert frames.shape == ref.shape and torch.equal(frames, ref)
    split = [r.shape[0] for r in results]
    expected = expected_split(case)
    if name == "plain_tokens_chunks":  # the reference pushed one more (empty-result) chunk before end_text
        expected = expected[: len(split) - 1] + expected[-1:]
    assert split == expected
    assert session.finished and session.cache_length == case["kv_len"]


def test_multiturn_reuses_the_cache(model, processor, golden, info, meta):
    texts, ids = info["texts"], info["text_token_ids"]
    session = model.start_session(
        processor, voice_codes=golden["codes.ref_CT"].T, user_text=texts["user_1"],
        user_audio_codes=golden["codes.user1"], max_frames=max_frames(meta), **GREEDY_STREAM,
    )
    turn0 = torch.cat([session.push_text_ids(ids["text_B"]), session.end_text()])
    assert torch.equal(turn0, golden["st_multiturn.turn0.frames"][:-1])
    assert session.cache_length == info["stream"]["multiturn"]["turn0"]["kv_len_after"]
    session.next_turn(user_text=texts["user_2"], user_audio_codes=golden["codes.user2"])
    first = session.push_text_ids(ids["text_A"])
    turn1 = torch.cat([first, session.end_text()])
    ref = golden["st_multiturn.turn1.frames"]
    assert torch.equal(turn1, ref[:-1])
    assert torch.equal(golden["st_multiturn.turn1_recompute.frames"], ref)  # the reference's own check
    assert session.cache_length == info["stream"]["multiturn"]["turn1"]["kv_len_after"]
    assert first.shape[0] == info["stream"]["multiturn"]["turn1"]["schedule"][0][1] - 1  # EOS inside the push


@torch.inference_mode()
def test_streaming_batch_of_two_through_the_frame_step(model, processor, golden, info):
    """The streaming inferencer's B=2 run (`st_batch`): left-padded prefill, then one text token per item and step."""
    ids = info["text_token_ids"]
    prefixes = [ids["text_A"][:12], ids["text_short"][:12]]
    prompts = [golden["stream.plain_prompt"], golden["prompt.stream_system_voice"]]
    from codectts.modeling.moss.realtime_generation import _text_prefix_rows

    items = [torch.cat([p, _text_prefix_rows(model.config, torch.tensor(t))]) for p, t in zip(prompts, prefixes)]
    rows, mask = processor.left_pad_rows(items)
    stepper = RealtimeFrameStepper(model, 2, RealtimeSampling(**GREEDY_STREAM), max_frames=41)
    frames = [stepper.prefill(rows, mask)]
    texts = [ids["text_A"][12:], ids["text_short"][12:]]
    k = 0
    while not bool(stepper.finished.all()):
        step_ids = torch.tensor([t[k] if k < len(t) else model.config.text_pad_token_id for t in texts])
        frames.append(stepper.step(step_ids))
        k += 1
    ref = golden["st_batch.frames"]
    ours = torch.stack(frames, dim=1)
    assert ours.shape == ref.shape
    for b in range(2):  # rows after an item's EOS are not compared (the reference repeats its last frame there)
        eos = int((ref[b, :, 0] == 1026).nonzero()[0, 0])
        assert torch.equal(ours[b, : eos + 1], ref[b, : eos + 1])


def test_precomputed_prompt_gives_the_same_frames(model, processor, golden, info, meta):
    texts, ids = info["texts"], info["text_token_ids"]
    session = model.start_session(
        processor, voice_codes=golden["codes.ref_CT"].T, user_text=texts["user_1"], user_audio_codes=golden["codes.user1"],
        precompute_prompt=True, max_frames=max_frames(meta), **GREEDY_STREAM,
    )
    assert session.cache_length == golden["st_voice_user.turn_input_ids"].shape[0]  # fed before any text
    turn0 = torch.cat([session.push_text_ids(ids["text_B"]), session.end_text()])
    assert torch.equal(turn0, golden["st_multiturn.turn0.frames"][:-1])
    session.next_turn(user_text=texts["user_2"], user_audio_codes=golden["codes.user2"])
    turn1 = torch.cat([session.push_text_ids(ids["text_A"]), session.end_text()])
    assert torch.equal(turn1, golden["st_multiturn.turn1.frames"][:-1])


def test_text_tokenization_modes(model, processor, info, meta):
    texts, ids = info["texts"], info["text_token_ids"]
    session = model.start_session(processor, text_tokenization="stable_prefix", max_frames=max_frames(meta), **GREEDY_STREAM)
    pieces = [texts["text_A"][i : i + 4] for i in range(0, len(texts["text_A"]), 4)]
    stable = torch.cat([session.push_text(p) for p in pieces] + [session.end_text()])
    reference = model.start_session(processor, max_frames=max_frames(meta), **GREEDY_STREAM)
    whole_ids = torch.cat([reference.push_text_ids(ids["text_A"]), reference.end_text()])
    assert torch.equal(stable, whole_ids)  # re-tokenizing the growing text gives the whole text's ids
    with pytest.raises(ValueError, match="text_tokenization"):
        model.start_session(processor, text_tokenization="words")


def test_session_bad_input(model, processor, golden, info):
    session = model.start_session(processor, **GREEDY_STREAM, max_frames=5)
    with pytest.raises(ValueError, match="empty text"):
        session.end_text()
    session = model.start_session(processor, **GREEDY_STREAM, max_frames=5)
    with pytest.raises(ValueError, match="text vocabulary"):
        session.push_text_ids([10**7])
    with pytest.raises(TypeError, match="push_text_ids"):
        session.push_text([1, 2])
    frames = torch.cat([session.push_text(info["texts"]["text_A"]), session.end_text()])
    assert frames.shape[0] <= 5
    with pytest.raises(RealtimeSessionClosedError, match="next_turn"):
        session.push_text("more")
    with pytest.raises(ValueError, match="next_turn"):
        session.end_text()
    with pytest.raises(ValueError, match="both user_text and user_audio_codes"):
        session.next_turn(user_text="hi")
    with pytest.raises(ValueError, match="both user_text and user_audio_codes"):
        model.start_session(processor, user_audio_codes=golden["codes.user1"])
    with pytest.raises(ValueError, match="shape \\[T, 16\\]"):
        model.start_session(processor, voice_codes=golden["codes.ref_CT"][:, :5])  # [16, 5]: wrong layout
    with pytest.raises(ValueError, match="outside"):
        model.start_session(processor, voice_codes=torch.full((4, 16), 1026))
    session.next_turn()  # a new turn after the closed one works
    assert session.push_text_ids(info["text_token_ids"]["text_A"]).dim() == 2
    # a turn that never fed anything: the next one still opens with the system prompt
    fresh = model.start_session(processor, **GREEDY_STREAM, max_frames=41)
    fresh.next_turn()
    frames = torch.cat([fresh.push_text_ids(info["text_token_ids"]["text_A"]), fresh.end_text()])
    assert torch.equal(frames, golden["st_plain_tokens_all.frames"][:-1])


# ---------------------------------------------------------------------------------------------------------- audio out
@pytest.fixture(scope="module")
def codec():
    from codectts.configuration.moss.audio_tokenizer import CodecTTSAudioTokenizerConfig
    from codectts.modeling.moss.audio_tokenizer import CodecTTSAudioTokenizerModel

    torch.manual_seed(0)
    return CodecTTSAudioTokenizerModel(CodecTTSAudioTokenizerConfig.tiny(codebook_size=1024)).eval()


def test_streaming_waveform_equals_offline_decode(model, processor, codec, info):
    from codectts.processing.moss.realtime import CodecTTSRealtimeProcessor

    speaking = CodecTTSRealtimeProcessor.from_model_config(model.config, processor.tokenizer, audio_tokenizer=codec)
    session = model.start_session(speaking, do_sample=False, repetition_penalty=1.1, max_frames=30)
    stream = speaking.stream_waveform(chunk_frames=2)
    chunks, pushed = [], []
    for delta in [info["texts"]["text_A"][i : i + 6] for i in range(0, len(info["texts"]["text_A"]), 6)]:
        frames = session.push_text(delta)
        pushed.append(frames)
        chunks.append(stream.push(frames))  # audio while text is still being pushed
    frames = session.end_text()
    pushed.append(frames)
    chunks += [stream.push(frames), stream.flush()]
    all_frames = torch.cat(pushed)
    offline = speaking.decode_audio_codes(all_frames)
    streamed = torch.cat(chunks)
    hop = 1920
    playable = speaking.playable_frames(all_frames).shape[0]
    assert streamed.shape == offline.shape == (playable * hop,)
    assert (streamed - offline).abs().max() < 1e-4
    # a non-code id ends the playable audio (the original bridge stops there)
    bad = all_frames[:4].clone()
    bad[2, 5] = 1025
    assert speaking.decode_audio_codes(bad).shape == (2 * hop,)
    with pytest.raises(ValueError, match="no audio tokenizer"):
        processor.decode_audio_codes(all_frames)
    # the session's own iterator: text deltas in, audio chunks out, same audio as decoding its frames offline
    session = model.start_session(speaking, do_sample=False, repetition_penalty=1.1, max_frames=30)
    deltas = [info["texts"]["text_B"][i : i + 5] for i in range(0, len(info["texts"]["text_B"]), 5)]
    streamed = torch.cat(list(session.stream_audio(deltas, chunk_frames=3)))
    offline = speaking.decode_audio_codes(torch.stack(session.frames))
    assert streamed.shape == offline.shape and (streamed - offline).abs().max() < 1e-4


def test_cli_streams_text_from_stdin(bundle, codec, tmp_path, monkeypatch, capsys):
    import io

    import soundfile as sf

    from codectts.cli import main

    folder = tmp_path / "with_codec"
    shutil.copytree(bundle, folder)
    codec.save_pretrained(folder / "audio_tokenizer")
    monkeypatch.setattr("sys.stdin", io.StringIO("Hello world, this is a tiny\ntest of the realtime model.\n"))
    out = tmp_path / "out.wav"
    main(["realtime", "--model", str(folder), "--output", str(out), "--greedy", "--max-frames", "20"])
    audio, rate = sf.read(out)
    assert rate == 24000 and len(audio) % 1920 == 0 and len(audio) > 0
    assert "first audio" in capsys.readouterr().err


def test_model_card_snippet_runs(bundle, codec, tmp_path, monkeypatch):
    """The usage snippet of hub_cards/moss_realtime.md runs as written on a local bundle (repo id -> folder)."""
    import string
    from importlib import resources

    from codectts.hub_cards import extract_usage_snippet

    folder = tmp_path / "bundle"
    shutil.copytree(bundle, folder)
    codec.save_pretrained(folder / "audio_tokenizer")
    text = resources.files("codectts.hub_cards").joinpath("moss_realtime.md").read_text(encoding="utf-8")
    repo = str(folder)
    values = dict(
        repo_id=repo, model_name="tiny", origin="", codec_note="", facts="", citation="",
        load_processor=f'processor = AutoProcessor.from_pretrained("{repo}", trust_remote_code=True)',
    )
    card = string.Template(text).substitute(values)
    assert "## Usage" in card and "${" not in card
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    exec(compile(extract_usage_snippet(card), "model_card_snippet", "exec"), {})
    assert (tmp_path / "streamed.wav").is_file() and (tmp_path / "batch.wav").is_file()
