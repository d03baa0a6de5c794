"""The delay pattern of MOSS-TTS Delay: codebook ``j`` of a frame sits ``j`` rows after codebook 0.

Pure tensor functions shared by the model (generation, streaming) and the processor (prompt building, decoding).
All functions work on CPU or any device, never modify their inputs, and accept an optional leading batch dim.

Layout (``N`` codebooks, ``T`` frames, ``P`` = the audio pad code)::

    apply_delay_pattern(codes[T, N], P) -> delayed[T + N - 1, N]   with delayed[t + j, j] = codes[t, j], else P
    revert_delay_pattern(delayed[R, N]) -> codes[R - N + 1, N]      with codes[t, j] = delayed[t + j, j]

In a packed token matrix an audio block of ``T`` frames takes ``T + N + 1`` rows (see :func:`audio_block_rows`)::

    <|audio_start|>   P ... P
    gen slot          delayed[0]            (T rows whose codebook 0 carries a frame)
    ...
    delay slot        delayed[T]            (N - 1 rows that flush the staircase)
    ...
    <|audio_end|>     P ... P
"""

from __future__ import annotations

import torch

__all__ = ["apply_delay_pattern", "revert_delay_pattern", "audio_block_rows"]


def _check_codes(codes: torch.Tensor, name: str) -> None:
    if not isinstance(codes, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(codes).__name__}")
    if codes.dim() not in (2, 3):
        raise ValueError(f"{name} must have shape [T, N] or [B, T, N], got {tuple(codes.shape)}")
    if codes.dtype.is_floating_point or codes.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer codes, got dtype {codes.dtype}")
    if codes.shape[-1] < 1:
        raise ValueError(f"{name} needs at least one codebook (last dim), got {tuple(codes.shape)}")


def _staircase(num_frames: int, num_codebooks: int, device: torch.device) -> torch.Tensor:
    """``[T, N]`` row index of ``codes[t, j]`` in the delayed layout: ``t + j``."""
    return torch.arange(num_frames, device=device)[:, None] + torch.arange(num_codebooks, device=device)[None, :]


def apply_delay_pattern(codes: torch.Tensor, pad_code: int) -> torch.Tensor:
    """Shift codebook ``j`` down by ``j`` rows.

    Args:
        codes: ``[T, N]`` or ``[B, T, N]`` integer codes (frame-major, codebook 0 first).
        pad_code: value written where no code exists (the staircase corners).

    Returns:
        ``[T + N - 1, N]`` (or ``[B, T + N - 1, N]``), same dtype/device; ``T = 0`` gives ``N - 1`` pad rows.
    """
    _check_codes(codes, "codes")
    num_frames, num_codebooks = codes.shape[-2], codes.shape[-1]
    delayed = codes.new_full((*codes.shape[:-2], num_frames + num_codebooks - 1, num_codebooks), pad_code)
    rows = _staircase(num_frames, num_codebooks, codes.device)
    return delayed.scatter(-2, rows.expand_as(codes), codes)


def revert_delay_pattern(delayed: torch.Tensor) -> torch.Tensor:
    """Undo :func:`apply_delay_pattern`: ``codes[t, j] = delayed[t + j, j]``.

    Args:
        delayed: ``[R, N]`` or ``[B, R, N]`` delayed rows, ``R >= N - 1``.

    Returns:
        ``[R - N + 1, N]`` (or batched) codes. Values are copied as they are (pad codes stay pad codes), so this also
        de-delays generated rows that contain several audio segments separated by all-pad frames.
    """
    _check_codes(delayed, "delayed")
    num_rows, num_codebooks = delayed.shape[-2], delayed.shape[-1]
    num_frames = num_rows - num_codebooks + 1
    if num_frames < 0:
        raise ValueError(
            f"cannot revert the delay pattern of {num_rows} rows with {num_codebooks} codebooks: "
            f"at least {num_codebooks - 1} rows are needed"
        )
    rows = _staircase(num_frames, num_codebooks, delayed.device)
    return delayed.gather(-2, rows.expand(*delayed.shape[:-2], -1, -1))


def audio_block_rows(
    codes: torch.Tensor,
    *,
    pad_code: int,
    audio_start_token_id: int,
    audio_end_token_id: int,
    gen_slot_token_id: int,
    delay_slot_token_id: int,
) -> torch.Tensor:
    """The ``[T + N + 1, 1 + N]`` rows of one audio block (text column first) in the training/prompt layout.

    ``<|audio_start|>`` row, ``T`` rows with ``gen_slot_token_id``, ``N - 1`` rows with ``delay_slot_token_id``, then
    the ``<|audio_end|>`` row; audio columns hold the delayed codes (pad on the start/end rows). For a user
    (reference) block pass the user-slot id for both slot ids.

    Args:
        codes: ``[T, N]`` codes of one segment.
    """
    _check_codes(codes, "codes")
    if codes.dim() != 2:
        raise ValueError(f"codes must have shape [T, N] for one audio block, got {tuple(codes.shape)}")
    num_frames, num_codebooks = codes.shape
    delayed = apply_delay_pattern(codes, pad_code)
    pad_row = codes.new_full((1, num_codebooks), pad_code)
    text = torch.cat(
        [
            codes.new_tensor([audio_start_token_id]),
            codes.new_full((num_frames,), gen_slot_token_id),
            codes.new_full((num_codebooks - 1,), delay_slot_token_id),
            codes.new_tensor([audio_end_token_id]),
        ]
    )
    audio = torch.cat([pad_row, delayed, pad_row], dim=0)
    return torch.cat([text[:, None], audio], dim=1)
