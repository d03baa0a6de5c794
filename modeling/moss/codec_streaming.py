"""Explicit streaming state of the audio tokenizer's encoder or decoder.

A state holds, for every attention layer, the keys/values of the last ``window - 1`` steps (already rotated by RoPE)
and, for every transformer stage, how many steps it has processed (the absolute RoPE position of the next step).
A chunk of ``T`` new steps attends to ``[cached keys, new keys]`` with the same sliding-window mask as offline
processing, *then* the cache keeps the newest ``window - 1`` keys. Streaming therefore equals offline processing at
any length and for any chunk size.

Deviation from the original: its ring buffer of capacity ``window`` overwrites the oldest keys *before* attending,
so once more than ``window`` steps were seen, the first queries of a multi-step chunk lose up to ``T - 1`` keys and
chunked output drifts from offline output. We keep ``window - 1`` old keys plus the whole new chunk instead.
"""

from __future__ import annotations

import torch


class CodecLayerCache:
    """Sliding-window key/value cache of one attention layer. Tensors are ``(batch, heads, steps, head_dim)``."""

    def __init__(self):
        self.key: torch.Tensor | None = None
        self.value: torch.Tensor | None = None

    def update(self, key: torch.Tensor, value: torch.Tensor, window: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``[cached, new]`` keys/values to attend to and keep the newest ``window - 1`` steps."""
        if self.key is not None:
            key = torch.cat([self.key, key], dim=2)
            value = torch.cat([self.value, value], dim=2)
        keep = min(window - 1, key.shape[2])
        # Copies, so the cache does not pin the (larger) concatenated tensors in memory.
        self.key = key[:, :, key.shape[2] - keep :].clone()
        self.value = value[:, :, value.shape[2] - keep :].clone()
        return key, value


class CodecStreamingState:
    """Streaming state of the encoder (``part="encoder"``) or the decoder (``part="decoder"``) for ``batch_size`` streams.

    Create it with ``model.init_streaming_state("encoder"|"decoder", batch_size)`` (or let ``encode``/``decode`` create it
    with ``use_cache=True``) and pass it back as ``streaming_state`` with every following chunk. All rows of the batch
    advance together. The object is updated in place and also returned in the model output.

    Attributes:
        part: which half of the codec it belongs to.
        batch_size: number of parallel streams.
        num_frames: code frames processed so far.
        finished: True once an encoder chunk ended with a partial frame (zero-padded); the stream cannot continue.
    """

    def __init__(self, part: str, batch_size: int):
        if part not in ("encoder", "decoder"):
            raise ValueError(f"part must be 'encoder' or 'decoder', got {part!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.part = part
        self.batch_size = int(batch_size)
        self.num_frames = 0
        self.finished = False
        self._layers: dict[tuple[int, int], CodecLayerCache] = {}
        self._positions: dict[int, int] = {}

    def layer_cache(self, stage: int, layer: int) -> CodecLayerCache:
        return self._layers.setdefault((stage, layer), CodecLayerCache())

    def position(self, stage: int) -> int:
        """Steps already processed by transformer stage ``stage`` (= RoPE position of its next step)."""
        return self._positions.get(stage, 0)

    def advance(self, stage: int, steps: int) -> None:
        self._positions[stage] = self.position(stage) + steps

    @classmethod
    def stack(cls, states: list[CodecStreamingState]) -> CodecStreamingState:
        """One state for all streams of ``states`` (same part and position), batch rows in the given order.

        Lets independent streams that are at the same point share one batched codec call (see `split`).
        """
        first = states[0]
        for state in states[1:]:
            if state.part != first.part or state._positions != first._positions or state.finished != first.finished:
                raise ValueError("only states of the same part at the same position can be stacked")
        stacked = cls(first.part, sum(state.batch_size for state in states))
        stacked.num_frames, stacked.finished, stacked._positions = (
            first.num_frames,
            first.finished,
            dict(first._positions),
        )
        for key, layer in first._layers.items():
            merged = stacked.layer_cache(*key)
            if layer.key is not None:
                merged.key = torch.cat([state._layers[key].key for state in states])
                merged.value = torch.cat([state._layers[key].value for state in states])
        return stacked

    def split(self, sizes: list[int] | None = None) -> list[CodecStreamingState]:
        """The inverse of `stack`: one state per group of ``sizes`` batch rows (default: one per row)."""
        sizes = sizes or [1] * self.batch_size
        if sum(sizes) != self.batch_size:
            raise ValueError(f"sizes {sizes} do not add up to the batch size {self.batch_size}")
        parts, start = [], 0
        for size in sizes:
            part = type(self)(self.part, size)
            part.num_frames, part.finished, part._positions = self.num_frames, self.finished, dict(self._positions)
            for key, layer in self._layers.items():
                if layer.key is not None:
                    cache = part.layer_cache(*key)
                    cache.key, cache.value = layer.key[start : start + size], layer.value[start : start + size]
            parts.append(part)
            start += size
        return parts

    def __repr__(self) -> str:
        return (
            f"CodecStreamingState(part={self.part!r}, batch_size={self.batch_size}, num_frames={self.num_frames}, "
            f"finished={self.finished})"
        )


__all__ = ["CodecLayerCache", "CodecStreamingState"]
