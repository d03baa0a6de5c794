"""Streaming MetaVoice: audio of the first-stage frames (EnCodec codebooks 0 and 1) while the first stage is still
generating, then the full 8-codebook result.

The second stage is non-causal (it needs every frame), so what can stream is the coarse 2-codebook (1.5 kbps)
rendition of the frames generated so far. EnCodec 24 kHz is causal (causal convolutions, unidirectional LSTM), so
decoding a prefix of frames gives exactly the first samples of decoding all of them: each chunk re-decodes the prefix
and yields only its new samples (cost grows with length; fine for the few hundred frames of one utterance).

Usage::

    stream = stream_first_stage_audio(model, processor(text=[...], reference_audio=...), chunk_frames=25, ...)
    for chunk in stream:            # MetaVoiceAudioChunk(batch_index, audio, first_frame, is_last, sampling_rate)
        play(chunk.audio)
    final = stream.result           # MetaVoiceGenerationOutput (8 codebooks, full-quality audio)
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers.generation.streamers import BaseStreamer

__all__ = ["MetaVoiceAudioChunk", "stream_first_stage_audio"]


@dataclass
class MetaVoiceAudioChunk:
    """Coarse (codebooks 0/1) audio of new first-stage frames of one batch item."""

    batch_index: int
    audio: torch.Tensor  # float32 [frames * hop]
    first_frame: int
    is_last: bool
    sampling_rate: int


class _Closed(Exception):
    pass


class _TokenQueue(BaseStreamer):
    def __init__(self):
        self.items: queue.Queue = queue.Queue()
        self.closed = threading.Event()

    def put(self, value: torch.Tensor) -> None:
        if self.closed.is_set():
            raise _Closed
        self.items.put(value.detach().to("cpu", torch.long))

    def end(self) -> None:
        pass


class _Stream:
    def __init__(self, model, inputs: dict, chunk_frames: int, generate_kwargs: dict):
        if model.codec is None:
            raise ValueError("streaming audio needs a bundled codec (convert with --codec ENCODEC_DIR)")
        if chunk_frames < 1:
            raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}")
        self.model, self.inputs, self.chunk_frames = model, inputs, int(chunk_frames)
        self.generate_kwargs = generate_kwargs
        self.result = None
        self._error: BaseException | None = None
        self._streamer = _TokenQueue()
        self._done = object()

    def _run(self) -> None:
        try:
            self.result = self.model.generate(**self.inputs, streamer=self._streamer, **self.generate_kwargs)
        except _Closed:
            pass
        except BaseException as error:  # re-raised in the consumer
            self._error = error
        finally:
            self._streamer.items.put(self._done)

    def __iter__(self) -> Iterator[MetaVoiceAudioChunk]:
        config = self.model.config.first_stage_config
        cs, eoa = config.codebook_size, config.end_of_audio_token_id
        batch = int(self.inputs["input_ids"].shape[0])
        hop = int(np.prod(self.model.codec.config.upsampling_ratios))
        rate = int(self.model.config.sampling_rate)
        tokens: list[list[int]] = [[] for _ in range(batch)]
        ended = [False] * batch
        emitted = [0] * batch  # frames already yielded
        thread = threading.Thread(target=self._run, daemon=True)
        thread.start()
        prompt_seen = False

        def frames_of(b: int) -> int:
            return len(tokens[b]) // 2

        def chunk(b: int, last: bool) -> MetaVoiceAudioChunk | None:
            frames = frames_of(b)
            if frames <= emitted[b] and not last:
                return None
            codes = torch.tensor(tokens[b][: 2 * frames], dtype=torch.long).view(frames, 2).T
            codes[1] -= cs
            audio = self.model.decode_audio_codes([codes])[0] if frames else torch.zeros(0)
            piece = MetaVoiceAudioChunk(b, audio[emitted[b] * hop :], emitted[b], last, rate)
            emitted[b] = frames
            return piece

        try:
            while True:
                item = self._streamer.items.get()
                if item is self._done:
                    break
                if not prompt_seen:  # generate hands over the prompt first
                    prompt_seen = True
                    continue
                for b in range(batch):
                    if ended[b]:
                        continue
                    token = int(item.view(-1)[b])
                    if token == eoa:
                        ended[b] = True
                        piece = chunk(b, last=True)
                        if piece is not None:
                            yield piece
                        continue
                    tokens[b].append(token)
                    if frames_of(b) - emitted[b] >= self.chunk_frames:
                        piece = chunk(b, last=False)
                        if piece is not None:
                            yield piece
            if self._error is not None:
                raise self._error
            for b in range(batch):
                if not ended[b]:
                    yield chunk(b, last=True)
        finally:
            self._streamer.closed.set()
            thread.join()


def stream_first_stage_audio(model, inputs: dict[str, Any], chunk_frames: int = 25, **generate_kwargs) -> _Stream:
    """Iterate over coarse audio chunks while ``model.generate(**inputs, **generate_kwargs)`` runs in a background
    thread; afterwards ``.result`` holds the full generation output. ``chunk_frames`` frames per chunk (75 per s)."""
    return _Stream(model, dict(inputs), chunk_frames, generate_kwargs)
