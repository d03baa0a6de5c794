"""Prompt rows: text token ids + audio code columns packed into ``[rows, 1 + n_vq]`` matrices.

Every row carries one text token (column 0) and one code per codebook (columns ``1..n_vq``; ``audio_pad_code`` where
there is no audio). An audio item of ``T`` frames becomes a block of rows::

    <|audio_start|>   pad ... pad
    SLOT              codes           (Delay: T + n_vq - 1 rows holding the delayed codes; Local: T rows)
    <|audio_end|>     pad ... pad

with SLOT = ``<|audio_user_slot|>`` in user turns; in assistant turns ``<|audio_assistant_gen_slot|>`` for the first T
rows and ``<|audio_assistant_delay_slot|>`` for the ``n_vq - 1`` Delay flush rows. A zero-frame item is just
start + end. Batches are left padded (text ``pad_token_id``, codes ``audio_pad_code``, mask ``False``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...modeling.moss.delay_pattern import apply_delay_pattern
from .messages import AUDIO_PLACEHOLDER

LAYOUTS = ("delay", "local")


@dataclass(frozen=True)
class PromptFormat:
    """Token ids and sizes that define the row layout (taken from the model config)."""

    layout: str
    n_vq: int
    audio_pad_code: int
    pad_token_id: int
    audio_start_token_id: int
    audio_end_token_id: int
    audio_user_slot_token_id: int
    audio_assistant_gen_slot_token_id: int
    audio_assistant_delay_slot_token_id: int

    def __post_init__(self):
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {self.layout!r}")
        if self.n_vq < 1:
            raise ValueError(f"n_vq must be >= 1, got {self.n_vq}")

    @property
    def delayed(self) -> bool:
        return self.layout == "delay"

    def block_length(self, frames: int, n_vq: int) -> int:
        """Number of slot rows between ``<|audio_start|>`` and ``<|audio_end|>`` for ``frames`` frames."""
        if frames == 0:
            return 0
        return frames + n_vq - 1 if self.delayed else frames


def expand_placeholders(content: str, frames: list[int], role: str, fmt: PromptFormat, n_vq: int, token) -> str:
    """Replace the i-th ``<|audio|>`` by the text of a block of ``frames[i]`` frames.

    ``token`` maps a token id to its string (the tokenizer's ``convert_ids_to_tokens``), so that nothing depends on how
    a tokenizer names its special tokens.
    """
    pieces = content.split(AUDIO_PLACEHOLDER)
    if len(pieces) - 1 != len(frames):
        raise ValueError(f"{len(pieces) - 1} {AUDIO_PLACEHOLDER} placeholder(s) for {len(frames)} audio item(s)")
    start, end = token(fmt.audio_start_token_id), token(fmt.audio_end_token_id)
    out = [pieces[0]]
    for n_frames, piece in zip(frames, pieces[1:]):
        n_slots = fmt.block_length(n_frames, n_vq)
        if role == "user":
            slots = token(fmt.audio_user_slot_token_id) * n_slots
        else:
            gen = min(n_frames, n_slots)
            slots = token(fmt.audio_assistant_gen_slot_token_id) * gen + token(
                fmt.audio_assistant_delay_slot_token_id
            ) * (n_slots - gen)
        out.append(start + slots + end + piece)
    return "".join(out)


def message_rows(
    text_ids: list[int], codes: list[torch.Tensor], fmt: PromptFormat, n_vq: int, *, truncate_last_audio: bool = False
) -> torch.Tensor:
    """Pack one rendered message into rows ``[T_msg, 1 + n_vq]``.

    Args:
        text_ids: token ids of the chat-wrapped message whose placeholders were expanded by
            :func:`expand_placeholders`.
        codes: one ``[frames, n_vq]`` tensor per audio block, in order.
        truncate_last_audio: continuation prompt: stop right after the last block's gen rows, so the prompt ends
            inside the audio (Delay also drops the ``n_vq - 1`` flush rows: the staircase stays open).
    """
    ids = torch.tensor(text_ids, dtype=torch.long)
    starts = (ids == fmt.audio_start_token_id).nonzero().flatten().tolist()
    ends = (ids == fmt.audio_end_token_id).nonzero().flatten().tolist()
    if len(starts) != len(codes) or len(ends) != len(codes):
        raise ValueError(
            f"found {len(starts)} audio-start and {len(ends)} audio-end tokens for {len(codes)} audio block(s): the "
            "message text must not contain audio control tokens itself"
        )
    pad_row = torch.full((1, n_vq), fmt.audio_pad_code, dtype=torch.long)
    columns: list[torch.Tensor] = []
    position = 0
    for start, end, block in zip(starts, ends, codes):
        columns.append(pad_row.expand(start + 1 - position, n_vq))
        if block.shape[0] > 0:
            columns.append(apply_delay_pattern(block, fmt.audio_pad_code) if fmt.delayed else block)
        position = start + 1 + fmt.block_length(block.shape[0], n_vq)
        if position != end:
            raise ValueError("audio block length does not match its slot tokens (tokenizer splits slot tokens?)")
    if truncate_last_audio:
        if not codes or codes[-1].shape[0] == 0:
            raise ValueError("a continuation prompt must end with an assistant audio item of at least one frame")
        if fmt.delayed:
            columns[-1] = columns[-1][: codes[-1].shape[0]]
    else:
        columns.append(pad_row.expand(len(text_ids) - position, n_vq))
    audio = torch.cat(columns, dim=0) if columns else pad_row[:0]
    return torch.cat([ids[: audio.shape[0], None], audio], dim=1)


def left_pad(rows: list[torch.Tensor], fmt: PromptFormat) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack ``[T_i, 1 + N]`` row matrices into ``input_ids [B, T, 1 + N]`` and a bool ``attention_mask [B, T]``."""
    length = max(r.shape[0] for r in rows)
    width = rows[0].shape[1]
    input_ids = torch.full((len(rows), length, width), fmt.audio_pad_code, dtype=torch.long)
    input_ids[:, :, 0] = fmt.pad_token_id
    attention_mask = torch.zeros(len(rows), length, dtype=torch.bool)
    for b, r in enumerate(rows):
        if r.shape[1] != width:
            raise ValueError(
                f"all conversations of a batch need the same number of codebooks ({width} vs {r.shape[1]})"
            )
        input_ids[b, length - r.shape[0] :] = r
        attention_mask[b, length - r.shape[0] :] = True
    return input_ids, attention_mask
