"""Streaming synthesis: waveform chunks while ``generate`` is still running.

``stream_speech(model, processor, inputs, ...)`` runs ``model.generate`` in a background thread with a streamer that
receives the prompt ``[B, T, 1 + N]`` and then every new row ``[B, 1 + N]``. Rows are turned into audio frames
incrementally (Delay: frame ``t`` is complete once row ``t + N - 1`` of its block exists; Local: one frame per row),
and every ``chunk_frames`` frames of a segment are decoded with the codec's streaming decoder. Each audio segment
(``<|audio_start|> ... <|audio_end|>`` block) of each sequence has its own codec stream, so the concatenated chunks of
a segment equal the offline ``processor.batch_decode`` waveform of that segment (the codec is causal and its
streaming is exact). Continuation prompts: the given prefix frames are decoded as codec context but not yielded.
"""

from __future__ import annotations

import itertools
import queue
import threading
from dataclasses import dataclass
from typing import Any, Iterator

import torch
from transformers.generation.streamers import BaseStreamer

from .prompt import PromptFormat


@dataclass
class SpeechChunk:
    """A piece of generated audio for one sequence of the batch."""

    batch_index: int
    """Which sequence of the batch it belongs to."""
    segment_index: int
    """Which audio segment of that sequence (0 for the first ``<|audio_start|> ... <|audio_end|>`` block)."""
    audio: torch.Tensor
    """float32 CPU waveform ``[samples]`` (``frames * downsample_rate`` samples)."""
    first_frame: int
    """Index (within the segment, prefix excluded) of the chunk's first frame."""
    is_last: bool
    """True for the last chunk of the segment (the block closed or generation ended)."""
    sampling_rate: int


class _StreamClosed(Exception):
    """Raised inside ``generate`` once the consumer stopped iterating: nobody reads its rows any more."""


class _RowQueueStreamer(BaseStreamer):
    """Hands the prompt and every generated row to the consumer thread; ends ``generate`` once it is closed."""

    def __init__(self):
        self.rows: queue.Queue = queue.Queue()
        self.closed = threading.Event()

    def put(self, value: torch.Tensor) -> None:
        if self.closed.is_set():
            raise _StreamClosed
        self.rows.put(value.detach().to("cpu", torch.long))

    def end(self) -> None:
        pass  # the generate thread queues the end marker itself, after generate has returned or raised


class _SegmentStream:
    """Frames of one audio block of one sequence, decoded incrementally with its own codec state."""

    def __init__(self, prefix_frames: int):
        self.index: int | None = None  # numbered when it first yields audio (as offline decoding lists segments)
        self.rows: list[torch.Tensor] = []  # audio columns of the block's slot rows
        self.prefix_frames = prefix_frames  # frames that belong to the prompt: decoded for context, not yielded
        self.decoded = 0  # frames already sent to the codec
        self.codebooks: int | None = None
        self.state = None
        self.stopped = False  # a separator frame ended the segment's audio
        self.yielded = False


class _SequenceFrames:
    """Incremental row → frame bookkeeping for one sequence (mirrors ``decoding.parse_generation``)."""

    def __init__(self, fmt: PromptFormat):
        self.fmt = fmt
        self.segment: _SegmentStream | None = None
        self.segments = 0  # segments that produced audio so far

    def add_row(self, row: torch.Tensor, in_prompt: bool) -> list[_SegmentStream]:
        """Feed one row; returns the segment streams that closed with it."""
        token = int(row[0])
        closed = []
        if token in (self.fmt.audio_start_token_id, self.fmt.audio_end_token_id) and self.segment is not None:
            closed.append(self.segment)
            self.segment = None
        if token == self.fmt.audio_start_token_id:
            self.segment = _SegmentStream(prefix_frames=0)
        elif self.segment is not None:
            self.segment.rows.append(row[1:])
        if in_prompt:
            return []  # blocks that close inside the prompt are the prompt's own audio
        return closed

    def end_prompt(self) -> None:
        """The prompt ended: an open block is a continuation whose frames so far are the given prefix."""
        if self.segment is not None:
            self.segment.prefix_frames = len(self.segment.rows)

    def new_frames(self, segment: _SegmentStream) -> torch.Tensor:
        """Complete frames of a block not yet sent to the codec, ``[frames, N]`` (Delay: de-delayed)."""
        start = segment.decoded
        if not self.fmt.delayed:
            rows = segment.rows[start:]
            return torch.stack(rows) if rows else torch.zeros(0, self.fmt.n_vq, dtype=torch.long)
        n = self.fmt.n_vq
        stop = len(segment.rows) - n + 1  # frame t is complete once row t + N - 1 exists
        if stop <= start:
            return torch.zeros(0, n, dtype=torch.long)
        codes = torch.stack(segment.rows[start : stop + n - 1])
        return torch.stack([codes[j : j + stop - start, j] for j in range(n)], dim=1)


def _valid_codebooks(frame: torch.Tensor, pad_code: int) -> int:
    """Number of leading real codes of a frame (0: a separator / pad frame)."""
    ok = ((frame >= 0) & (frame < pad_code)).long()
    return int(ok.cumprod(0).sum())


def stream_speech(
    model,
    processor,
    inputs: dict[str, Any],
    *,
    chunk_frames: int = 4,
    **generate_kwargs,
) -> Iterator[SpeechChunk]:
    """Generate speech and yield :class:`SpeechChunk` objects as soon as ``chunk_frames`` frames of a segment exist.

    Args:
        model: a codectts Delay or Local generator (its ``generate`` must call the streamer with the prompt
            ``[B, T, 1 + N]`` and then each row ``[B, 1 + N]``).
        processor: the :class:`~codectts.processing.CodecTTSProcessor` that built ``inputs`` (its codec decodes).
        inputs: the processor output (``input_ids`` ``[B, T, 1 + N]``, ``attention_mask`` ``[B, T]``).
        chunk_frames: frames per decoded chunk (1 frame = 80 ms at 12.5 Hz); smaller means earlier first audio.
        generate_kwargs: forwarded to ``model.generate`` (sampling settings, ``max_new_tokens``, ...).

    Chunks of different sequences interleave; concatenating the chunks of one ``(batch_index, segment_index)``
    gives that segment's waveform, equal (to float precision) to the offline ``processor.batch_decode`` result.
    Leaving the loop early (``break``, closing the iterator) also ends ``generate`` at its next step.
    """
    if chunk_frames < 1:
        raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}")
    if "streamer" in generate_kwargs:
        raise ValueError("stream_speech installs its own streamer; do not pass `streamer`")
    codec = processor.audio_tokenizer
    if codec is None:
        raise ValueError("the processor has no audio tokenizer (codec) to decode with")
    fmt = processor.prompt_format
    hop = codec.config.downsample_rate
    rate = codec.config.sampling_rate
    device = next(codec.parameters()).device

    streamer = _RowQueueStreamer()
    failure: list[BaseException] = []

    def run_generate():
        try:
            with torch.inference_mode():
                model.generate(**inputs, streamer=streamer, **generate_kwargs)
        except BaseException as err:  # re-raised in the consumer thread
            failure.append(err)
        finally:
            streamer.rows.put(None)

    def pending(segment: _SegmentStream, batch_index: int, final: bool):
        """The segment's new frames for its codec stream (whole chunks, or everything if ``final``): a request
        ``(segment, batch_index, codes [frames, K], final)``, or None when there is nothing to send or say."""
        if segment.stopped:
            return None
        todo = sequences[batch_index].new_frames(segment)
        if segment.codebooks is None and todo.shape[0]:
            segment.codebooks = _valid_codebooks(todo[0], fmt.audio_pad_code)
        for i in range(todo.shape[0]):  # a pad / out-of-range code ends the segment's audio (as offline)
            if _valid_codebooks(todo[i], fmt.audio_pad_code) != segment.codebooks:
                todo, final, segment.stopped = todo[:i], True, True
                break
        if not final:
            todo = todo[: (todo.shape[0] // chunk_frames) * chunk_frames]
        if todo.shape[0] == 0 and not (final and segment.yielded):
            return None
        return segment, batch_index, todo[:, : segment.codebooks], final

    def decode_all(requests) -> list[SpeechChunk]:
        """Decode every request, one batched codec call per group of streams at the same point (same frames sent
        so far, same codebooks, same new frames): all active (sequence, segment) pairs of a batch share a call."""
        groups: dict[tuple[int, int, int], list] = {}
        for request in requests:
            segment, _, todo, _ = request
            if todo.shape[0]:
                groups.setdefault((segment.decoded, segment.codebooks, todo.shape[0]), []).append(request)
        audio = {}
        for group in groups.values():
            segments = [segment for segment, _, _, _ in group]
            codes = torch.stack([todo.T for _, _, todo, _ in group]).to(device)  # [streams, K, frames]
            state = None if segments[0].state is None else type(segments[0].state).stack([s.state for s in segments])
            with torch.inference_mode():
                out = codec.decode(codes, streaming_state=state, use_cache=True)
            for segment, part, values in zip(segments, out.streaming_state.split(), out.audio_values, strict=True):
                first = segment.decoded
                segment.state = part
                segment.decoded += codes.shape[-1]
                values = values[0].float().cpu()
                audio[id(segment)] = (first, values[max(segment.prefix_frames - first, 0) * hop :])
        chunks = []
        for segment, batch_index, _, final in requests:
            first, values = audio.get(id(segment), (segment.decoded, torch.zeros(0)))
            if values.numel() == 0 and not (final and segment.yielded):
                continue  # nothing new (an empty chunk is only sent to mark the end of a segment)
            if segment.index is None:
                segment.index = sequences[batch_index].segments
                sequences[batch_index].segments += 1
            segment.yielded = True
            # One codec call may have decoded a backlog of several chunks: hand them out chunk by chunk.
            start = max(first, segment.prefix_frames)  # first frame yielded (block numbering, prefix included)
            stop = start + values.numel() // hop
            cuts = [start] + list(range((start // chunk_frames + 1) * chunk_frames, stop, chunk_frames)) + [stop]
            for i, (a, b) in enumerate(itertools.pairwise(cuts)):
                chunks.append(
                    SpeechChunk(
                        batch_index=batch_index,
                        segment_index=segment.index,
                        audio=values[(a - start) * hop : (b - start) * hop],
                        first_frame=a - segment.prefix_frames,
                        is_last=final and i == len(cuts) - 2,
                        sampling_rate=rate,
                    )
                )
        return chunks

    thread = threading.Thread(target=run_generate, name="codectts-generate", daemon=True)
    thread.start()
    sequences: list[_SequenceFrames] = []
    try:
        ended = False
        while not ended:
            # Every row queued while the previous chunks were decoded is taken at once, so a backlog is decoded in one
            # codec call per stream (the per-call cost no longer scales with the number of chunks).
            values = [streamer.rows.get()]
            while values[-1] is not None:
                try:
                    values.append(streamer.rows.get_nowait())
                except queue.Empty:
                    break
            ended = values[-1] is None
            requests = []
            for value in values[:-1] if ended else values:
                if value.dim() == 3:  # the prompt
                    sequences = [_SequenceFrames(fmt) for _ in range(value.shape[0])]
                    for b, seq in enumerate(sequences):
                        for row in value[b]:
                            seq.add_row(row, in_prompt=True)
                        seq.end_prompt()
                    continue
                for b, seq in enumerate(sequences):
                    closed = seq.add_row(value[b], in_prompt=False)
                    requests += [pending(segment, b, final=True) for segment in closed]
            if not ended:
                requests += [
                    pending(seq.segment, b, final=False) for b, seq in enumerate(sequences) if seq.segment is not None
                ]
            yield from decode_all([request for request in requests if request is not None])
        if failure:
            raise failure[0]
        # generation ended inside a block (max_new_tokens)
        requests = [pending(seq.segment, b, final=True) for b, seq in enumerate(sequences) if seq.segment is not None]
        yield from decode_all([request for request in requests if request is not None])
    finally:
        streamer.closed.set()  # a consumer that stops early (break, error) also stops generation at the next row
        thread.join()
