"""Benchmark the audio tokenizer: real-time factor and peak memory, offline and streaming.

    python benchmarks/audio_tokenizer.py                         # tiny config, CPU, 10 s and 60 s clips
    python benchmarks/audio_tokenizer.py --seconds 10 60 600      # memory grows linearly with length
    python benchmarks/audio_tokenizer.py --full --seconds 2       # released 1.77 B config, random weights
    python benchmarks/audio_tokenizer.py --full --device cuda --dtype bfloat16 --seconds 10 60

RTF = processing time / audio duration (< 1 is faster than real time). Peak memory is the increase over the
baseline during the call: CUDA allocator peak on GPU, sampled process RSS on CPU. Streaming rows feed
``--chunk-frames`` frames per call (1 frame = 80 ms) with explicit state and report the per-call latency.
Weights are random: speed and memory do not depend on them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import torch

from codectts.configuration.moss.audio_tokenizer import CodecTTSAudioTokenizerConfig
from codectts.modeling.moss.audio_tokenizer import CodecTTSAudioTokenizerModel

sys.path.insert(0, str(Path(__file__).parent))  # the sibling helper module, also when imported from elsewhere
from _common import sync  # noqa: E402


class PeakMemory:
    """Peak memory increase (MiB) inside a ``with`` block: CUDA allocator on GPU, sampled RSS on CPU."""

    def __init__(self, device: torch.device):
        self.device = device
        self.peak_mib = 0.0

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._base = torch.cuda.memory_allocated()
        else:
            self._base = self._rss()
            self._peak = self._base
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak_mib = (torch.cuda.max_memory_allocated() - self._base) / 2**20
        else:
            self._stop.set()
            self._thread.join()
            self._peak = max(self._peak, self._rss())
            self.peak_mib = (self._peak - self._base) / 2**20

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _sample(self):
        while not self._stop.wait(0.002):
            self._peak = max(self._peak, self._rss())


def timed(fn, device, repeats: int):
    best, result = float("inf"), None
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        result = fn()
        sync(device)
        best = min(best, time.perf_counter() - start)
    return best, result


def benchmark(model, seconds: float, batch: int, chunk_frames: list[int], repeats: int, device) -> list[tuple]:
    rows = []
    sr, hop = model.config.sampling_rate, model.config.downsample_rate
    samples = int(seconds * sr) // hop * hop
    audio = torch.randn(batch, 1, samples, device=device) * 0.1
    duration = samples / sr
    with torch.inference_mode():
        model.encode(audio[..., : 4 * hop])  # warm-up
        with PeakMemory(device) as mem:
            t_enc, enc = timed(lambda: model.encode(audio), device, repeats)
        rows.append(("encode", "offline", seconds, batch, t_enc / duration, "", mem.peak_mib))
        codes = enc.audio_codes
        with PeakMemory(device) as mem:
            t_dec, _ = timed(lambda: model.decode(codes), device, repeats)
        rows.append(("decode", "offline", seconds, batch, t_dec / duration, "", mem.peak_mib))

        for frames in chunk_frames:
            for part in ("encode", "decode"):
                state = model.init_streaming_state("encoder" if part == "encode" else "decoder", batch)
                pieces = audio.split(frames * hop, dim=-1) if part == "encode" else codes.split(frames, dim=-1)
                call = model.encode if part == "encode" else model.decode
                latencies = []
                with PeakMemory(device) as mem:
                    for piece in pieces:
                        sync(device)
                        start = time.perf_counter()
                        call(piece, streaming_state=state)
                        sync(device)
                        latencies.append(time.perf_counter() - start)
                p50 = statistics.median(latencies) * 1e3
                p95 = sorted(latencies)[int(0.95 * (len(latencies) - 1))] * 1e3
                rows.append(
                    (
                        part,
                        f"stream {frames}f",
                        seconds,
                        batch,
                        sum(latencies) / duration,
                        f"{p50:.1f}/{p95:.1f}",
                        mem.peak_mib,
                    )
                )
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="released 1.77 B layout (random weights)")
    parser.add_argument(
        "--seconds", type=float, nargs="+", default=None, help="clip lengths (default 10 60; --full: 2)"
    )
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--chunk-frames", type=int, nargs="*", default=None, help="streaming chunk sizes in frames")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--repeats", type=int, default=1, help="offline timings: best of N")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    config = CodecTTSAudioTokenizerConfig() if args.full else CodecTTSAudioTokenizerConfig.tiny()
    seconds = args.seconds or ([2.0] if args.full else [10.0, 60.0])
    chunk_frames = args.chunk_frames if args.chunk_frames is not None else ([1] if args.full else [1, 5])
    torch.manual_seed(0)
    model = CodecTTSAudioTokenizerModel(config).eval()
    dtype = getattr(torch, args.dtype)
    if dtype != torch.float32:  # transformer stages only; the quantizer stays float32
        model.encoder.to(dtype)
        model.decoder.to(dtype)
    model.to(device)

    print(
        f"# audio tokenizer benchmark: {'full (released layout)' if args.full else 'tiny'} config, "
        f"{model.num_parameters() / 1e6:.2f} M params, device={device}, dtype={args.dtype}, "
        f"threads={torch.get_num_threads()}, torch {torch.__version__}"
    )
    header = f"| {'op':6} | {'mode':10} | {'audio s':>7} | {'batch':>5} | {'RTF':>8} | {'call ms p50/p95':>15} | {'peak MiB':>8} |"
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for s in seconds:
        for op, mode, sec, batch, rtf, lat, mem in benchmark(model, s, args.batch, chunk_frames, args.repeats, device):
            print(f"| {op:6} | {mode:10} | {sec:7.1f} | {batch:5d} | {rtf:8.4f} | {lat:>15} | {mem:8.1f} |")


if __name__ == "__main__":
    main()
