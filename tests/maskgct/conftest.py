"""Shared fixtures of the MaskGCT tests: the golden tiny checkpoints (official layout) converted once per session."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import codectts  # noqa: F401  (registers the Auto classes)

GOLDEN = Path(__file__).parent.parent / "fixtures" / "golden" / "maskgct"
ORIGINAL = GOLDEN / "original"
W2V = GOLDEN / "w2v_bert_tiny"
STATS = GOLDEN / "w2v_bert_stats.safetensors"


def convert(dst: Path) -> Path:
    from codectts.conversion import convert_checkpoint

    return convert_checkpoint(ORIGINAL, dst, config=ORIGINAL / "maskgct.json", semantic_model=W2V, semantic_stats=STATS)


@pytest.fixture(scope="module", autouse=True)
def _few_threads():
    # tiny models: thread start-up costs more than it saves (and CI has 2 cores)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def converted(tmp_path_factory) -> Path:
    return convert(tmp_path_factory.mktemp("maskgct") / "converted")


@pytest.fixture(scope="session")
def model(converted):
    from transformers import AutoModel

    return AutoModel.from_pretrained(str(converted)).eval()


@pytest.fixture(scope="session")
def processor(converted):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(str(converted))
