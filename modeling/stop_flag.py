"""'Has every sequence finished?' read without stalling the host on an accelerator (shared by both generators)."""

from __future__ import annotations

import torch


class LaggedStopFlag:
    """A device-side boolean read on the host one step late on CUDA, at once elsewhere.

    On CUDA the flag is copied into pinned host memory without blocking and read at the next step, while the device
    already runs that step; a generation loop that stops on it has then produced ``lag_steps`` extra rows (rows of
    finished sequences, i.e. padding) and drops them. Two pinned buffers and events are reused alternately, so a step
    allocates nothing. ``lag=False`` (e.g. when a streamer must not see extra rows) reads the flag at once.
    """

    def __init__(self, device: torch.device, lag: bool = True):
        self.lag = lag and device.type == "cuda"
        self.lag_steps = 1 if self.lag else 0
        if self.lag:
            self._host = [torch.empty((), dtype=torch.bool, pin_memory=True) for _ in range(2)]
            self._events = [torch.cuda.Event() for _ in range(2)]
            self._step = 0

    def push(self, flag: torch.Tensor) -> bool:
        """Record this step's flag; return the value to act on now (the previous step's on CUDA)."""
        if not self.lag:
            return bool(flag)
        slot = self._step % 2
        self._host[slot].copy_(flag, non_blocking=True)
        self._events[slot].record()
        self._step += 1
        if self._step == 1:
            return False
        previous = 1 - slot
        self._events[previous].synchronize()
        return bool(self._host[previous])
