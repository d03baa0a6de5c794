"""Fine-tuning the Delay and Local generators: training rows/labels, collator, Trainer (+ LoRA), and the overfit check.

The overfit tests cannot pass by accident: a randomly initialised tiny model is trained on one utterance (random codes),
then greedy ``generate`` from the training prompt must reproduce the training codes exactly — for plain fine-tuning and
for LoRA, before and after ``merge_and_unload`` (and after a save/load of the merged folder).

To keep them fast on 2 cores the models use a compact copy of the golden test tokenizer (its 507 BPE tokens + the
special tokens renumbered right after them) instead of a 151 672-row vocabulary.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, Trainer, TrainingArguments, set_seed

import codectts  # noqa: F401  (Auto classes)
from codectts.configuration.moss.delay import CodecTTSDelayConfig
from codectts.configuration.moss.local import CodecTTSLocalConfig
from codectts.modeling.moss.delay import CodecTTSDelayForConditionalGeneration
from codectts.modeling.moss.local import CodecTTSLocalForConditionalGeneration
from codectts.processing.moss.training import (
    IGNORE_INDEX,
    CodecTTSDataCollator,
    build_training_example,
    prepare_training_examples,
    training_map_function,
)
from codectts.processing.moss.processor import CodecTTSProcessor

GOLDEN = Path(__file__).resolve().parent.parent / "fixtures" / "golden"
SPECIALS = (
    ("pad_token_id", "<|endoftext|>"),
    ("im_start_token_id", "<|im_start|>"),
    ("im_end_token_id", "<|im_end|>"),
    ("audio_start_token_id", "<|audio_start|>"),
    ("audio_end_token_id", "<|audio_end|>"),
    ("audio_user_slot_token_id", "<|audio_user_slot|>"),
    ("audio_assistant_gen_slot_token_id", "<|audio_assistant_gen_slot|>"),
    ("audio_assistant_delay_slot_token_id", "<|audio_assistant_delay_slot|>"),
)
N_VQ, AUDIO_VOCAB, TEXT = 4, 64, "Hello world."


@lru_cache
def compact_tokenizer_dir(root: str) -> Path:
    """The golden byte-level BPE without its 151k filler tokens; specials renumbered after the real vocabulary."""
    data = json.loads((GOLDEN / "tokenizer" / "tokenizer.json").read_text())
    vocab = data["model"]["vocab"]
    filler_start = min(i for token, i in vocab.items() if token.startswith("#") and i >= 256)
    data["model"]["vocab"] = {token: i for token, i in vocab.items() if i < filler_start}
    by_name = {t["content"]: t for t in data["added_tokens"]}
    data["added_tokens"] = [dict(by_name[name], id=filler_start + k) for k, (_, name) in enumerate(SPECIALS)]
    folder = Path(root)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tokenizer.json").write_text(json.dumps(data))
    for name in ("tokenizer_config.json", "chat_template.jinja"):
        (folder / name).write_bytes((GOLDEN / "tokenizer" / name).read_bytes())
    return folder


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These models are tiny: one intra-op thread is ~10x faster than several fighting over busy CI cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return AutoTokenizer.from_pretrained(compact_tokenizer_dir(str(tmp_path_factory.mktemp("tokenizer"))))


def token_ids(tokenizer) -> dict[str, int]:
    return {field: tokenizer.convert_tokens_to_ids(name) for field, name in SPECIALS}


def tiny_config(layout: str, tokenizer, hidden: int = 32):
    text = dict(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=1024,
    )  # fmt: skip
    common = dict(text_config=text, n_vq=N_VQ, audio_vocab_size=AUDIO_VOCAB, **token_ids(tokenizer))
    if layout == "delay":
        return CodecTTSDelayConfig(**common)
    return CodecTTSLocalConfig(
        **common, local_num_layers=1, local_hidden_size=hidden, local_intermediate_size=2 * hidden,
        adapter_intermediate_size=hidden,
    )  # fmt: skip


def tiny_model(layout: str, tokenizer, hidden: int = 32, init_std: float | None = None):
    set_seed(0)
    config = tiny_config(layout, tokenizer, hidden)
    cls = CodecTTSDelayForConditionalGeneration if layout == "delay" else CodecTTSLocalForConditionalGeneration
    model = cls(config)
    if init_std is not None:
        # weights at the scale of a trained model: the frozen heads can express confident predictions (with the
        # default 0.02 init, LoRA alone cannot move the logits of a random model far from uniform)
        for module in model.modules():
            if isinstance(module, (torch.nn.Linear, torch.nn.Embedding)):
                torch.nn.init.normal_(module.weight, std=init_std)
    return model


def training_codes(seed: int = 1, frames: int = 6) -> torch.Tensor:
    return torch.randint(0, AUDIO_VOCAB, (frames, N_VQ), generator=torch.Generator().manual_seed(seed))


def greedy_codes(model, processor, text: str = TEXT) -> torch.Tensor:
    """Greedy generation from the training prompt -> the codes of the first generated audio segment."""
    inputs = processor([[processor.build_user_message(text=text)]], mode="generation")
    model.eval()
    with torch.no_grad():
        out = model.generate(**inputs, do_sample=False, max_new_tokens=32, return_dict_in_generate=True)
    speech = processor.decode_generation(out.sequences, input_ids=inputs["input_ids"], decode_audio=False)[0]
    assert speech.audio_codes, f"no audio generated: {speech.text!r}"
    return speech.audio_codes[0]


def train(model, examples, collator, steps: int, learning_rate: float, tmp_path, **kwargs) -> Trainer:
    args = TrainingArguments(
        output_dir=str(tmp_path / "trainer"), max_steps=steps, learning_rate=learning_rate, lr_scheduler_type="constant",
        per_device_train_batch_size=len(examples), logging_steps=5, report_to="none", save_strategy="no",
        use_cpu=True, disable_tqdm=True, remove_unused_columns=False, **kwargs,
    )  # fmt: skip
    trainer = Trainer(model=model, args=args, train_dataset=examples, data_collator=collator)
    trainer.train()
    return trainer


# ---------------------------------------------------------------------------------------------------------------------
# overfit: the model learned the data
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["delay", "local"])
def test_overfit_plain(layout, tokenizer, tmp_path):
    model = tiny_model(layout, tokenizer)
    processor = CodecTTSProcessor.from_model_config(model.config, tokenizer)
    codes = training_codes()
    examples = prepare_training_examples(processor, [{"text": TEXT, "codes": codes}])
    trainer = train(model, examples, CodecTTSDataCollator.from_processor(processor), 40, 1e-2, tmp_path)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert losses[-1] < 0.2 * losses[0]
    generated = greedy_codes(model, processor)
    # Delay emits one extra (unsupervised) frame from its first delay row, Local none: the first frames are the data
    assert generated.shape[0] in (codes.shape[0], codes.shape[0] + 1)
    assert torch.equal(generated[: codes.shape[0]], codes)


@pytest.mark.parametrize("layout", ["delay", "local"])
def test_overfit_lora_before_and_after_merge(layout, tokenizer, tmp_path):
    from codectts.finetune import add_lora

    model = tiny_model(layout, tokenizer, hidden=64, init_std=0.3)
    processor = CodecTTSProcessor.from_model_config(model.config, tokenizer)
    codes = training_codes(seed=2)
    examples = prepare_training_examples(processor, [{"text": TEXT, "codes": codes}])
    base = {k: v.clone() for k, v in model.state_dict().items()}
    peft_model = add_lora(model, rank=16)
    trainable = {n for n, p in peft_model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    assert not any("embed" in n or "lm_head" in n or "adapter" in n for n in trainable)
    train(peft_model, examples, CodecTTSDataCollator.from_processor(processor), 80, 1e-2, tmp_path)

    assert torch.equal(greedy_codes(peft_model, processor)[: codes.shape[0]], codes), "LoRA model (unmerged)"
    peft_model.save_pretrained(tmp_path / "adapter")
    merged = peft_model.merge_and_unload()
    assert type(merged) is type(model) and not any("lora" in k for k in merged.state_dict())
    assert torch.equal(greedy_codes(merged, processor)[: codes.shape[0]], codes), "merged model"
    state = merged.state_dict()
    changed = {k for k in base if not torch.equal(base[k], state[k])}
    assert changed and all(k.endswith("proj.weight") and "layers." in k for k in changed), sorted(changed)[:5]

    merged.save_pretrained(tmp_path / "merged")  # a normal model folder: loads without peft
    from transformers import AutoModel

    reloaded = AutoModel.from_pretrained(tmp_path / "merged")
    assert torch.equal(greedy_codes(reloaded, processor)[: codes.shape[0]], codes), "reloaded merged folder"

    # the adapter alone, applied to the untouched base, is the same model again
    from peft import PeftModel

    fresh = tiny_model(layout, tokenizer, hidden=64, init_std=0.3)
    again = PeftModel.from_pretrained(fresh, tmp_path / "adapter")
    assert torch.equal(greedy_codes(again, processor)[: codes.shape[0]], codes), "adapter reloaded on the base"
