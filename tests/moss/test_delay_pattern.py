"""Delay-pattern helpers: golden layout, round trips for random shapes, block layout, bad input."""

from pathlib import Path

import pytest
import torch
from codectts.modeling.moss.delay_pattern import apply_delay_pattern, audio_block_rows, revert_delay_pattern
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file

GOLDEN = Path(__file__).parents[1] / "fixtures" / "golden"


def test_matches_reference_processor_layout():
    cases = load_file(GOLDEN / "processor" / "delay" / "cases.safetensors")
    delayed = apply_delay_pattern(cases["delay_pattern.codes"], pad_code=64)
    assert torch.equal(delayed, cases["delay_pattern.delayed"])
    assert torch.equal(revert_delay_pattern(delayed), cases["delay_pattern.dedelayed"])


@settings(max_examples=60, deadline=None)
@given(
    batch=st.one_of(st.none(), st.integers(1, 3)),
    frames=st.integers(0, 9),
    codebooks=st.integers(1, 6),
    seed=st.integers(0, 2**16),
)
def test_round_trip_and_staircase(batch, frames, codebooks, seed):
    pad = 1000
    shape = (frames, codebooks) if batch is None else (batch, frames, codebooks)
    codes = torch.randint(0, pad, shape, generator=torch.Generator().manual_seed(seed))
    delayed = apply_delay_pattern(codes, pad)
    assert delayed.shape[-2:] == (frames + codebooks - 1, codebooks)
    assert torch.equal(revert_delay_pattern(delayed), codes)
    # every (row, codebook) either holds codes[row - j, j] or pad, checked element-wise
    lead = 1 if batch is None else batch
    flat = delayed.reshape(lead, frames + codebooks - 1, codebooks)
    ref = codes.reshape(lead, frames, codebooks)
    for r in range(frames + codebooks - 1):
        for j in range(codebooks):
            t = r - j
            expected = ref[:, t, j] if 0 <= t < frames else torch.full_like(flat[:, r, j], pad)
            assert torch.equal(flat[:, r, j], expected)
    # exactly the codes are non-pad
    assert int((delayed != pad).sum()) == codes.numel()


def test_revert_keeps_separators_between_segments():
    pad = 9
    a, b = torch.randint(0, 9, (3, 3)), torch.randint(0, 9, (2, 3))
    rows = torch.cat([apply_delay_pattern(a, pad), torch.full((2, 3), pad), apply_delay_pattern(b, pad)])
    frames = revert_delay_pattern(rows)
    assert torch.equal(frames[:3], a)
    assert torch.equal(frames[-2:], b)
    assert (frames[3:-2] == pad).all()


def test_audio_block_rows_layout():
    codes = torch.arange(12).view(4, 3)
    ids = dict(pad_code=99, audio_start_token_id=1, audio_end_token_id=2, gen_slot_token_id=3, delay_slot_token_id=4)
    rows = audio_block_rows(codes, **ids)
    assert rows.shape == (4 + 3 + 1, 4)
    assert rows[:, 0].tolist() == [1, 3, 3, 3, 3, 4, 4, 2]
    assert (rows[0, 1:] == 99).all() and (rows[-1, 1:] == 99).all()
    assert torch.equal(revert_delay_pattern(rows[1:-1, 1:]), codes)


@pytest.mark.parametrize(
    "value, error",
    [
        (torch.zeros(3, dtype=torch.long), ValueError),
        (torch.zeros(1, 2, 3, 4, dtype=torch.long), ValueError),
        (torch.zeros(3, 2), TypeError),
        ([[1, 2]], TypeError),
    ],
)
def test_bad_codes(value, error):
    with pytest.raises(error):
        apply_delay_pattern(value, 0)
    with pytest.raises(error):
        revert_delay_pattern(value)


def test_revert_needs_enough_rows():
    with pytest.raises(ValueError, match="at least 3 rows"):
        revert_delay_pattern(torch.zeros(2, 4, dtype=torch.long))
