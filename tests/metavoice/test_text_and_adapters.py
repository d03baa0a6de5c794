"""Tokenizer ids (both offsets), the original normaliser, and the original adapters."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from codectts.processing.metavoice import MetaVoiceTokenizer, deinterleave_first_stage, split_second_stage_rows

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "golden" / "metavoice"
TOKENIZER_INFO = json.loads((GOLDEN / "tokenizer" / "meta.json").read_text())["info"]
TOKENIZER_OUT = load_file(str(GOLDEN / "tokenizer" / "outputs.safetensors"))
ADAPTER_INFO = json.loads((GOLDEN / "adapters" / "meta.json").read_text())["info"]


def test_processor_tokenizer_gives_first_stage_ids(processor):
    cases = [c for c in TOKENIZER_INFO["cases"] if c["offset"] == 2049 and "text" in c]
    assert cases
    for i, case in enumerate(cases):
        ids = processor.tokenizer.encode(case["text"])
        assert ids == case["ids"] == TOKENIZER_OUT[f"first_stage.encode.{i}"].tolist()
        assert processor.tokenizer.decode(ids) == case["decode"]
    assert processor.tokenizer.eot_token == processor.tokenizer.encode("")[-1]


@pytest.mark.parametrize("offset,name", [(2049, "first_stage"), (1025, "second_stage"), (None, "no_offset")])
def test_every_offset(offset, name):
    table = json.loads((GOLDEN / "tokenizer" / "tokenizer.json").read_text())
    tokenizer = MetaVoiceTokenizer.from_dict(table, offset=offset or 0)
    cases = [c for c in TOKENIZER_INFO["cases"] if c["offset"] == offset]
    for i, case in enumerate(c for c in cases if "text" in c):
        assert tokenizer.encode(case["text"]) == TOKENIZER_OUT[f"{name}.encode.{i}"].tolist() == case["ids"]
    eot = next(c["eot_token"] for c in cases if "eot_token" in c)
    assert tokenizer.eot_token == eot
    with pytest.raises(ValueError, match="special token"):
        tokenizer.encode("hi <|endoftext|>")


def test_tokenizer_round_trips_through_save(processor, tmp_path):
    from codectts.processing.metavoice import MetaVoiceProcessor

    processor.save_pretrained(tmp_path)
    again = MetaVoiceProcessor.from_pretrained(tmp_path)
    assert again.tokenizer.encode("Hello world.") == processor.tokenizer.encode("Hello world.")
    assert again.to_dict() == processor.to_dict()


def test_normalize_text_matches_the_original(processor):
    for case in TOKENIZER_INFO["normalize_text"]:
        if "raises" in case:
            with pytest.raises(ValueError, match="Non-supported character found"):
                processor.normalize_text(case["in"])
        else:
            assert processor.normalize_text(case["in"]) == case["out"]


def test_processor_call_normalises_and_left_pads(processor):
    texts = ["Hello \u201cworld\u201d", "A much longer sentence\tthan the first one."]
    batch = processor(text=texts)
    ids = [processor.tokenizer.encode(processor.normalize_text(t)) for t in texts]
    width = max(map(len, ids))
    assert batch["input_ids"].shape == batch["attention_mask"].shape == (2, width)
    for b, row in enumerate(ids):
        assert batch["input_ids"][b, width - len(row) :].tolist() == row
        assert batch["attention_mask"][b].tolist() == [0] * (width - len(row)) + [1] * len(row)
    assert "speaker_features" not in batch


def test_processor_text_errors(processor):
    with pytest.raises(ValueError, match="empty"):
        processor(text=["  \n"])
    with pytest.raises(ValueError, match="Non-supported"):
        processor(text="\u2122")
    with pytest.raises(ValueError, match="context"):
        processor(text="word " * processor.context_length)
    with pytest.raises(ValueError, match="reference_audio"):
        processor(text=["a", "b", "c"], reference_audio=[("x", 1), ("y", 2)])


@pytest.mark.parametrize("case", [k for k in ADAPTER_INFO if k.startswith("flattened.")])
def test_first_stage_adapter(case, processor):
    data = ADAPTER_INFO[case]
    expected = (data["text_ids"], data["audio_ids"])
    assert processor.deinterleave_first_stage(data["tokens"]) == expected
    assert deinterleave_first_stage(torch.tensor(data["tokens"])) == expected


@pytest.mark.parametrize("case", [k for k in ADAPTER_INFO if k.startswith("tilted.")])
def test_second_stage_adapter(case, processor):
    data = ADAPTER_INFO[case]
    expected = (data["text_ids"], data["audio_ids"])
    assert processor.split_second_stage_rows(data["tokens"]) == expected
    assert split_second_stage_rows(torch.tensor(data["tokens"])) == expected
