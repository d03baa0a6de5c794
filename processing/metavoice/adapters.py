"""Token streams <-> EnCodec codebooks, as the original MetaVoice adapters do it (value filters), and the positional
variant our own pipeline uses.

The original adapters classify every token by its *value* only: order is not checked, the last text id is dropped
and codebooks are truncated to the shortest one. With a well-trained model both agree; with any other model the
value filter can shift codebooks against each other (e.g. second-stage codes predicted at text/pad positions are
kept and misalign codebooks 2..7), so `MetaVoiceForTextToSpeech.generate` cuts by position instead: frame ``f`` of
codebooks 2..7 is the second-stage output at ``text_length + f``, and the first stage's frames are its (grammar-
constrained) token pairs before end-of-audio.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["deinterleave_first_stage", "split_second_stage_rows"]


def _ints(values) -> list[int]:
    if hasattr(values, "tolist"):
        values = values.tolist()
    return [int(v) for v in values]


def deinterleave_first_stage(tokens: Sequence[int], codebook_size: int = 1024) -> tuple[list[int], list[list[int]]]:
    """First-stage token row -> ``(text_ids, [c0, c1])`` (``FlattenedInterleavedEncodec2Codebook``):
    ``t < cs`` codebook 0, ``cs <= t < 2cs`` codebook 1 (minus ``cs``), ``2cs`` (end-of-audio) skipped, larger
    ids text; the last text id is dropped and both codebooks are cut to the shorter one."""
    tokens = _ints(tokens)
    if any(t < 0 for t in tokens):
        raise ValueError("tokens must be non-negative first-stage ids")
    text = [t for t in tokens if t > 2 * codebook_size]
    c0 = [t for t in tokens if t < codebook_size]
    c1 = [t - codebook_size for t in tokens if codebook_size <= t < 2 * codebook_size]
    frames = min(len(c0), len(c1))
    return text[:-1], [c0[:frames], c1[:frames]]


def split_second_stage_rows(
    rows: Sequence[Sequence[int]], codebook_size: int = 1024
) -> tuple[list[int], list[list[int]]]:
    """Second-stage ``[8, block]`` rows -> ``(text_ids, [c0, ..., c7])`` (``TiltedEncodec``): row 0 values above
    the pad (``cs``) are text, below are codebook 0; other rows keep values below the pad; all codebooks are cut to
    the shortest and the last text id is dropped."""
    rows = [_ints(row) for row in rows]
    if not rows:
        raise ValueError("rows must hold at least one row")
    text = [t for t in rows[0] if t > codebook_size]
    codes = [[t for t in rows[0] if t < codebook_size]]
    codes += [[t for t in row if t < codebook_size] for row in rows[1:]]
    frames = min(len(c) for c in codes)
    return text[:-1], [c[:frames] for c in codes]
