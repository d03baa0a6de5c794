"""One check of a generation prompt, shared by every codec-token generator's ``generate``.

A prompt is ``input_ids [batch, rows, channels]`` with an optional ``attention_mask [batch, rows]`` (1 = real row,
0 = left padding). Both generators apply the same rules, so that they accept and refuse the same prompts:

* at least one sequence and one row;
* the mask has the prompt's ``(batch, rows)`` shape and holds only 0/1 (or booleans);
* padding is on the left only: every sequence's last row is real, and no real row precedes a padding row
  (a mask that pads the last row or a whole sequence would make the model continue from a padding row).
"""

from __future__ import annotations

import torch


def check_prompt(input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> None:
    """Raise ``ValueError``/``TypeError`` naming the argument and the fix when the prompt breaks the rules above."""
    if not isinstance(input_ids, torch.Tensor):
        raise TypeError(f"input_ids must be a torch.Tensor, got {type(input_ids).__name__}")
    if input_ids.dim() >= 1 and input_ids.shape[0] == 0:
        raise ValueError("input_ids holds no sequence (batch size 0): pass at least one prompt")
    if input_ids.dim() >= 2 and input_ids.shape[1] == 0:
        raise ValueError("the prompt is empty: input_ids has no rows (pass a prompt from the processor)")
    if attention_mask is None:
        return
    if not isinstance(attention_mask, torch.Tensor):
        raise TypeError(f"attention_mask must be a torch.Tensor, got {type(attention_mask).__name__}")
    if tuple(attention_mask.shape) != tuple(input_ids.shape[:2]):
        raise ValueError(
            f"attention_mask must have shape {tuple(input_ids.shape[:2])} (batch, rows), "
            f"got {tuple(attention_mask.shape)}"
        )
    if attention_mask.is_floating_point() or attention_mask.is_complex():
        raise TypeError(f"attention_mask must hold 0/1 integers or booleans, got {attention_mask.dtype}")
    mask = attention_mask.long()
    if bool(((mask != 0) & (mask != 1)).any()):
        raise ValueError("attention_mask must hold only 0 (padding) and 1 (real row)")
    if bool((mask[:, -1] == 0).any()):
        rows = (mask[:, -1] == 0).nonzero().flatten().tolist()
        raise ValueError(
            f"attention_mask marks the last row of sequence(s) {rows} as padding: pad prompts on the left, and every "
            "sequence needs at least one real row"
        )
    if bool((mask[:, 1:] < mask[:, :-1]).any()):
        raise ValueError("attention_mask has padding after a real row: pad prompts on the left only")
