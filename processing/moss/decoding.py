"""Turning generated token matrices back into text and audio-code segments (codec-free part of decoding).

A generated sequence ``[T, 1 + N]`` is the prompt followed by the generated rows. The generated text is the text
column after the prompt; audio comes in blocks ``<|audio_start|> rows... <|audio_end|>``. When the prompt itself ends
inside an open block (continuation), that block starts in the prompt: its first ``P`` frames are the given prefix
and are decoded with the block (the codec is causal and needs them as context) but cut from the returned audio.

Deliberate differences from the reference decoder (documented in the processor):
* the text is parsed on token ids, not with a regex built from unescaped token strings (which stripped every ``<``
  and ``>`` and never produced ``<|audio|>``); runs ``[start] gen* delay* [end]`` holding a gen slot become
  ``<|audio|>`` (also when generation stopped before ``<|audio_end|>``), other control runs disappear, and the
  end-of-turn ``<|im_end|>`` / padding is not part of the content;
* segments are split per block and handed to the codec together (no ``torch.split`` with indices, no streaming
  codec call that only supports one item);
* the prefix of a continuation is cut exactly (``P`` frames; the reference cut ``1 + P`` frames for Delay);
* Local: the codes on the ``<|audio_end|>`` row (sampled together with the stop token, never trained) are not a frame
  unless ``include_end_frame=True``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ...modeling.moss.delay_pattern import revert_delay_pattern
from .messages import AUDIO_PLACEHOLDER
from .prompt import PromptFormat


@dataclass
class ParsedGeneration:
    """Codec-free view of one generated sequence."""

    text_ids: list[int]
    """Generated text-column ids (prompt excluded; cut at the end of the turn, trailing padding removed)."""
    segments: list[torch.Tensor] = field(default_factory=list)
    """Audio segments, each ``[frames, N]`` int64 codes including any continuation prefix frames."""
    prefix_frames: list[int] = field(default_factory=list)
    """Per segment, how many leading frames belong to the prompt (to cut after decoding)."""


@dataclass
class GeneratedSpeech:
    """What :meth:`CodecTTSProcessor.decode_generation` returns per batch item."""

    text: str | None
    """Generated text with one ``<|audio|>`` per audio run (``None`` when empty)."""
    audio: list[torch.Tensor]
    """One float32 CPU waveform ``[samples]`` per audio segment (continuation prefix removed)."""
    audio_codes: list[torch.Tensor]
    """The codes ``[frames, N]`` of each segment (continuation prefix removed)."""
    sampling_rate: int

    @property
    def waveform(self) -> torch.Tensor:
        """All segments concatenated ``[samples]`` (empty when nothing was generated)."""
        return torch.cat(self.audio) if self.audio else torch.zeros(0)


def _last_index(values: torch.Tensor, value: int) -> int:
    hits = (values == value).nonzero()
    return int(hits[-1]) if hits.numel() else -1


def _frames_of_block(block: torch.Tensor, fmt: PromptFormat) -> torch.Tensor:
    """Codes ``[frames, N]`` of the slot rows of one block (Delay: de-delayed)."""
    codes = block[:, 1:]
    if not fmt.delayed:
        return codes
    if codes.shape[0] < codes.shape[1]:  # staircase never completed a single frame
        return codes[:0]
    return revert_delay_pattern(codes)


def _generated_codebooks(frames: torch.Tensor, pad_code: int) -> int:
    """Number of leading codebooks holding at least one real code (the rest were not generated)."""
    real = ((frames >= 0) & (frames < pad_code)).any(dim=0)
    return int(real.long().cumprod(0).sum())


def _valid_runs(frames: torch.Tensor, pad_code: int) -> list[tuple[int, int]]:
    """Maximal ``[start, stop)`` runs of frames whose codes are all real codes (no pad / out-of-range value)."""
    if frames.shape[1] == 0:
        return []
    ok = ((frames >= 0) & (frames < pad_code)).all(dim=1).tolist()
    runs, start = [], None
    for i, good in enumerate(ok + [False]):
        if good and start is None:
            start = i
        elif not good and start is not None:
            runs.append((start, i))
            start = None
    return runs


def parse_generation(
    sequence: torch.Tensor,
    prompt_length: int,
    fmt: PromptFormat,
    *,
    stop_ids: tuple[int, ...] = (),
    trailing_ids: tuple[int, ...] = (),
    include_end_frame: bool = False,
    num_quantizers: int | None = None,
) -> ParsedGeneration:
    """Split one sequence ``[T, 1 + N]`` (prompt + generated rows) into generated text ids and audio segments.

    Args:
        prompt_length: number of leading rows that are the prompt (the padded prompt length for a batch).
        stop_ids: the generated text ends before the first of these (``<|im_end|>``: end of the assistant turn).
        trailing_ids: ids dropped from the end of the generated text (padding of finished sequences).
        include_end_frame: Local only: also decode the codes sampled on the ``<|audio_end|>`` row (reference
            behaviour; they were never trained).
        num_quantizers: keep only the first ``K`` codebooks. Default: per block, the leading codebooks that hold
            any real code (Local generation with ``n_vq_for_inference=K`` leaves the others as pad codes).
    """
    if sequence.dim() != 2:
        raise ValueError(f"a generated sequence must be [T, 1 + n_vq], got shape {tuple(sequence.shape)}")
    if not 0 <= prompt_length <= sequence.shape[0]:
        raise ValueError(f"prompt_length {prompt_length} outside the sequence of {sequence.shape[0]} rows")
    sequence = sequence.detach().cpu().long()
    text = sequence[:, 0]
    start_id, end_id = fmt.audio_start_token_id, fmt.audio_end_token_id

    # Does the prompt end inside an audio block (continuation)? Then decoding starts at that block.
    window_start, prefix_rows = prompt_length, 0
    last_start = _last_index(text[:prompt_length], start_id)
    if last_start >= 0 and not (text[last_start:prompt_length] == end_id).any():
        window_start, prefix_rows = last_start, prompt_length - last_start - 1

    # Audio blocks: rows strictly between <|audio_start|> and the next <|audio_end|> (or the end of the sequence).
    segments, prefixes = [], []
    block_begin = None
    window = sequence[window_start:]
    rows = window[:, 0].tolist()
    for i, token in enumerate(rows + [end_id]):
        closing = token == end_id or token == start_id or i == len(rows)
        if block_begin is not None and closing:
            stop = i + 1 if (include_end_frame and not fmt.delayed and i < len(rows) and token == end_id) else i
            frames = _frames_of_block(window[block_begin:stop], fmt)
            frames = frames[:, : num_quantizers or _generated_codebooks(frames, fmt.audio_pad_code)]
            first_block = block_begin == 1 and window_start < prompt_length
            prefix = prefix_rows if first_block else 0
            for run_start, run_stop in _valid_runs(frames, fmt.audio_pad_code):
                if run_stop <= prefix:
                    continue  # entirely inside the given prefix: nothing new to return
                segments.append(frames[run_start:run_stop])
                prefixes.append(max(prefix - run_start, 0))
            block_begin = None
        if token == start_id and i < len(rows):
            block_begin = i + 1

    generated = text[prompt_length:].tolist()
    stops = [i for i, token in enumerate(generated) if token in stop_ids]
    if stops:
        generated = generated[: stops[0]]
    while generated and generated[-1] in trailing_ids:
        generated.pop()
    return ParsedGeneration(text_ids=generated, segments=segments, prefix_frames=prefixes)


def render_text(text_ids: list[int], fmt: PromptFormat, decode) -> str | None:
    """Generated text with audio control runs replaced: ``[start] gen* delay* [end]`` → ``<|audio|>`` when the run
    holds a gen slot, else nothing. ``decode`` turns a list of ordinary token ids into a string."""
    start, gen, delay, end = (
        fmt.audio_start_token_id,
        fmt.audio_assistant_gen_slot_token_id,
        fmt.audio_assistant_delay_slot_token_id,
        fmt.audio_end_token_id,
    )
    # Order of the control tokens inside one run; a token that cannot continue the current run opens a new one.
    rank = {start: 0, gen: 1, delay: 2, end: 3}
    pieces: list[str] = []
    plain: list[int] = []
    run_rank, run_has_gen = None, False

    def close_run():
        nonlocal run_rank, run_has_gen
        if run_rank is not None and run_has_gen:
            pieces.append(AUDIO_PLACEHOLDER)
        run_rank, run_has_gen = None, False

    for token in text_ids:
        if token not in rank:
            close_run()
            plain.append(token)
            continue
        if plain:
            pieces.append(decode(plain))
            plain = []
        r = rank[token]
        # start opens a run; gen may repeat; delay may repeat; end closes it (below), so a start, or a token
        # that comes earlier in the order than the run's last one, begins a new run.
        if run_rank is not None and (r == 0 or r < run_rank):
            close_run()
        run_rank = r
        run_has_gen = run_has_gen or token == gen
        if token == end:
            close_run()
    close_run()
    if plain:
        pieces.append(decode(plain))
    content = "".join(pieces)
    return content or None
