"""Delay generator shortcuts are exact: only the allowed text-head rows inside audio blocks (`TextHeadShortcut`)."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from codectts.conversion import convert_checkpoint
from codectts.modeling.moss.delay import CodecTTSDelayForConditionalGeneration
from codectts.modeling.moss.generation_delay import TextHeadShortcut

GOLDEN = Path(__file__).parents[1] / "fixtures" / "golden" / "moss_tts_delay"
GOLDEN_OUTPUTS = load_file(GOLDEN / "outputs_eager.safetensors")
GREEDY = {"do_sample": False, "audio_do_sample": False}


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    out = tmp_path_factory.mktemp("delay_speed") / "converted"
    convert_checkpoint(GOLDEN / "model", out)
    return CodecTTSDelayForConditionalGeneration.from_pretrained(out, attn_implementation="eager").eval()


@pytest.fixture
def shortcut_steps(monkeypatch):
    """Counts the decode steps that computed only the allowed text-head rows."""
    calls = {"short": 0}
    original = TextHeadShortcut.forward_kwargs

    def counting(self):
        kwargs = original(self)
        calls["short"] += bool(kwargs)
        return kwargs

    monkeypatch.setattr(TextHeadShortcut, "forward_kwargs", counting)
    return calls


def prompt(name):
    return GOLDEN_OUTPUTS[f"prompt_{name}.input_ids"], GOLDEN_OUTPUTS[f"prompt_{name}.attention_mask"].long()


def run(model, ids, mask, plain, **kwargs):
    # asking for the raw text logits turns the shortcut off: the plain path, full head every step
    return model.generate(
        ids, attention_mask=mask, return_dict_in_generate=True, output_scores=True, output_logits=plain, **kwargs
    )


@pytest.mark.parametrize("name,max_new", [("AC", 40)])
def test_golden_greedy_trajectories_through_the_shortcut(model, shortcut_steps, name, max_new):
    ids, mask = prompt(name)
    sequences = model.generate(ids, attention_mask=mask, max_new_tokens=max_new, **GREEDY)
    assert shortcut_steps["short"] > 0
    for b in range(ids.shape[0]):
        expected = GOLDEN_OUTPUTS[f"gen_{name}.max{max_new}.b{b}.ids"]
        assert torch.equal(sequences[b, -expected.shape[0] :], expected)


@pytest.mark.parametrize("sample", [False, True], ids=["greedy", "sampled"])
def test_shortcut_gives_the_plain_tokens_and_scores(model, shortcut_steps, sample):
    ids, mask = prompt("AC")  # a batch of two: rows enter and leave audio blocks at different steps
    settings = {"max_new_tokens": 40, "do_sample": sample, "audio_do_sample": sample, "top_k": 50, "top_p": 0.9}
    torch.manual_seed(3)
    plain = run(model, ids, mask, plain=True, **settings)
    assert shortcut_steps["short"] == 0
    torch.manual_seed(3)
    fast = run(model, ids, mask, plain=False, **settings)
    assert shortcut_steps["short"] > 0
    assert torch.equal(fast.sequences, plain.sequences)
    assert len(fast.scores) == len(plain.scores)
    for fast_scores, plain_scores, fast_audio, plain_audio in zip(
        fast.scores, plain.scores, fast.audio_scores, plain.audio_scores, strict=True
    ):
        assert torch.equal(fast_scores, plain_scores)  # every id: the allowed ones bitwise, the rest -inf in both
        assert torch.equal(fast_audio, plain_audio)


def test_shortcut_with_static_cache_and_text_processors(model, shortcut_steps):
    ids, mask = prompt("AC")
    settings = dict(max_new_tokens=30, cache_implementation="static", repetition_penalty=1.2, **GREEDY)
    plain = run(model, ids, mask, plain=True, **settings)
    fast = run(model, ids, mask, plain=False, **settings)
    assert shortcut_steps["short"] > 0
    assert torch.equal(fast.sequences, plain.sequences)
    for fast_scores, plain_scores in zip(fast.scores, plain.scores, strict=True):
        assert torch.equal(fast_scores, plain_scores)


def test_allowed_head_rows_are_bitwise_the_full_head(model):
    hidden = torch.randn(8, 1, model.config.text_config.hidden_size)
    rows = torch.tensor(
        [model.config.audio_assistant_gen_slot_token_id, model.config.audio_assistant_delay_slot_token_id]
    )
    block = torch.cat([rows, rows[:1].expand(TextHeadShortcut.BLOCK - 2)])
    for batch in (1, 2, 4, 8):
        full = model.lm_head(hidden[:batch])[..., rows]
        short = torch.nn.functional.linear(hidden[:batch], model.lm_head.weight[block])[..., :2]
        assert torch.equal(short, full)


def test_compiled_static_decode_with_the_shortcut_matches_the_plain_path(shortcut_steps):
    """The decode step compiles with and without the row subset (two graphs); dynamo only, CPU-cheap."""
    from transformers import CompileConfig

    from codectts.configuration.moss.delay import CodecTTSDelayConfig

    ids = {"pad_token_id": 0, "im_start_token_id": 1, "im_end_token_id": 2, "audio_start_token_id": 3,
           "audio_end_token_id": 4, "audio_user_slot_token_id": 5, "audio_assistant_gen_slot_token_id": 6,
           "audio_assistant_delay_slot_token_id": 7}  # fmt: skip
    text = {"vocab_size": 512, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16}  # fmt: skip
    torch.manual_seed(0)
    config = CodecTTSDelayConfig(text_config=text, n_vq=3, audio_vocab_size=32, **ids)
    model = CodecTTSDelayForConditionalGeneration(config).eval()
    prompt_ids = torch.full((2, 6, 4), config.audio_pad_code)
    prompt_ids[..., 0] = torch.randint(8, 512, (2, 6), generator=torch.Generator().manual_seed(1))
    prompt_ids[0, -1, 0] = config.audio_start_token_id  # sequence 0 starts in audio, sequence 1 in text
    mask = torch.ones(2, 6, dtype=torch.long)
    compile_config = CompileConfig(fullgraph=True, backend="eager", mode=None)
    compile_config._compile_all_devices = True  # transformers only auto-compiles on accelerators
    torch._dynamo.reset()
    settings = {"max_new_tokens": 12, "cache_implementation": "static", "sequence_bias": {(3,): 20.0}, **GREEDY}
    # (the compiled step itself differs from the uncompiled one by ~1 ulp: compare compiled with compiled)
    plain = run(model, prompt_ids, mask, plain=True, compile_config=compile_config, **settings)
    fast = run(model, prompt_ids, mask, plain=False, compile_config=compile_config, **settings)
    assert shortcut_steps["short"] > 0
    assert torch.equal(fast.sequences, plain.sequences)
    for fast_scores, plain_scores in zip(fast.scores, plain.scores, strict=True):
        assert torch.equal(fast_scores, plain_scores)
