"""Shared fixtures of the MetaVoice tests: the golden recordings and converted folders (from the original `.pt`
files and from the safetensors variant)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import codectts  # noqa: F401  (registers the Auto classes)

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "golden" / "metavoice"


@pytest.fixture(scope="session")
def pt_source(tmp_path_factory) -> Path:
    """A folder laid out like the Hub repo: first_stage.pt, second_stage.pt, speaker_encoder.pt."""
    src = tmp_path_factory.mktemp("metavoice_src")
    for stage in ("first_stage", "second_stage", "speaker_encoder"):
        shutil.copy(GOLDEN / stage / f"{stage}.pt", src / f"{stage}.pt")
    return src


@pytest.fixture(scope="session")
def safetensors_source(tmp_path_factory) -> Path:
    """The fixtures' safetensors variant: <stage>/model.safetensors (+ model_args.json, tokenizer.json)."""
    src = tmp_path_factory.mktemp("metavoice_src_st")
    for stage in ("first_stage", "second_stage", "speaker_encoder"):
        (src / stage).mkdir()
        for name in ("model.safetensors", "model_args.json", "tokenizer.json"):
            if (GOLDEN / stage / name).is_file():
                shutil.copy(GOLDEN / stage / name, src / stage / name)
    return src


@pytest.fixture(scope="session")
def converted(pt_source, tmp_path_factory) -> Path:
    from codectts.conversion import convert_checkpoint

    return convert_checkpoint(pt_source, tmp_path_factory.mktemp("metavoice_out") / "model")


@pytest.fixture(scope="session")
def model(converted):
    from transformers import AutoModel

    return AutoModel.from_pretrained(converted).eval()


@pytest.fixture(scope="session")
def processor(converted):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(converted)


@pytest.fixture(autouse=True)
def _one_thread():
    """The fixture models are tiny: one intra-op thread is several times faster than contended threads."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
