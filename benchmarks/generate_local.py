"""Generation speed of the Local (local-transformer) generator.

Measures, per (size, batch, mode): frames/s per sequence and in total, real-time factor at the codec frame rate
(12.5 frames/s: RTF = wall time / audio seconds, < 1 is faster than real time), time to first frame, mean time per
frame (one backbone step + the 1 + n_vq local steps), and peak memory (CUDA allocator peak on GPU, process peak RSS on
CPU).

Modes: ``eager`` (dynamic backbone cache, no compile), ``static`` (static backbone cache, no compile) and ``compiled``
(static cache; backbone step and the per-frame local loop compiled with ``fullgraph=True`` — CUDA graphs on GPU via
``mode="reduce-overhead"``).

Random weights; the end-of-audio token is made unreachable so every run generates exactly ``frames`` frames.

    python benchmarks/generate_local.py                       # tiny config on CPU
    python benchmarks/generate_local.py --size 1.7b --device cuda --dtype bfloat16 --frames 256

``FAMILY`` / :func:`run_benchmark` are what the shared table (``benchmarks/generate.py``) plugs in.
"""

from __future__ import annotations

import argparse
import resource
import time

import torch
from codectts.configuration.local import CodecTTSLocalConfig
from codectts.modeling.local import CodecTTSLocalForConditionalGeneration
from transformers import CompileConfig
from transformers.generation.streamers import BaseStreamer

MODES = ("eager", "static", "compiled")
SIZES = ("tiny", "1.7b")


def benchmark_config(size: str) -> CodecTTSLocalConfig:
    if size == "1.7b":  # released MOSS-TTS-Local-Transformer: Qwen3-1.7B backbone, local 4 x 1536, 32 codebooks
        config = CodecTTSLocalConfig()
    elif size == "tiny":
        config = CodecTTSLocalConfig(
            text_config=dict(
                vocab_size=2048, hidden_size=128, intermediate_size=384, num_hidden_layers=4, num_attention_heads=4,
                num_key_value_heads=2, head_dim=32,
            ),
            local_num_layers=2, local_hidden_size=96, local_intermediate_size=256, adapter_intermediate_size=128,
            n_vq=32, audio_vocab_size=1024, audio_pad_code=1024, pad_token_id=0, audio_start_token_id=1,
            audio_end_token_id=2, im_start_token_id=3, im_end_token_id=4, audio_user_slot_token_id=5,
            audio_assistant_gen_slot_token_id=6, audio_assistant_delay_slot_token_id=7,
        )
    else:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}")
    # An id the text head cannot produce: every run lasts exactly `frames` frames.
    config.audio_end_token_id = config.vocab_size
    return config


class _FirstFrameTimer(BaseStreamer):
    """Records when the first generated frame arrives (generate() first puts the prompt)."""

    def __init__(self):
        self.calls = 0
        self.first_frame_at: float | None = None

    def put(self, value):
        self.calls += 1
        if self.calls == 2 and self.first_frame_at is None:
            self.first_frame_at = time.perf_counter()

    def end(self):
        pass


def _sync(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def run_benchmark(
    size: str = "tiny",
    batch_sizes: tuple[int, ...] = (1, 8),
    modes: tuple[str, ...] = MODES,
    frames: int = 32,
    prompt_len: int = 64,
    device: str | None = None,
    dtype: str | None = None,
    repeats: int = 2,
    greedy: bool = False,
) -> list[dict]:
    """Time ``generate`` and return one row (dict) per (batch, mode)."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch_dtype = getattr(torch, dtype) if dtype else (torch.bfloat16 if device.type == "cuda" else torch.float32)
    config = benchmark_config(size)
    torch.manual_seed(0)
    with torch.device(device):
        model = CodecTTSLocalForConditionalGeneration(config).to(torch_dtype).eval()
    sampling = dict(text_temperature=0, audio_temperature=0) if greedy else {}
    rows = []
    for batch in batch_sizes:
        generator = torch.Generator().manual_seed(batch)
        ids = torch.randint(0, config.audio_vocab_size, (batch, prompt_len, config.num_channels), generator=generator)
        ids[..., 0] = torch.randint(8, config.vocab_size, (batch, prompt_len), generator=generator)
        ids[:, -1, 0], ids[:, -1, 1:] = config.audio_start_token_id, config.audio_pad_code
        ids = ids.to(device)
        mask = torch.ones(batch, prompt_len, dtype=torch.long, device=device)
        for mode in modes:
            kwargs = dict(attention_mask=mask, max_new_tokens=frames, **sampling)
            if mode in ("static", "compiled"):
                kwargs["cache_implementation"] = "static"
            if mode == "compiled":
                compile_config = CompileConfig(fullgraph=True, mode="reduce-overhead" if device.type == "cuda" else None)
                compile_config._compile_all_devices = True  # also on CPU
                kwargs["compile_config"] = compile_config
            else:
                kwargs["disable_compile"] = True
            with torch.no_grad():
                model.generate(ids, **kwargs)  # warm-up (compilation happens here)
                best = None
                for _ in range(repeats):
                    if device.type == "cuda":
                        torch.cuda.reset_peak_memory_stats(device)
                    timer = _FirstFrameTimer()
                    _sync(device)
                    start = time.perf_counter()
                    out = model.generate(ids, streamer=timer, **kwargs)
                    _sync(device)
                    elapsed = time.perf_counter() - start
                    if best is None or elapsed < best[0]:
                        best = (elapsed, timer.first_frame_at - start, out.shape[1] - prompt_len)
            elapsed, first, generated = best
            audio_seconds = generated / config.frame_rate
            rows.append(
                {
                    "family": "local",
                    "size": size,
                    "device": str(device),
                    "dtype": str(torch_dtype).removeprefix("torch."),
                    "mode": mode,
                    "batch": batch,
                    "prompt_rows": prompt_len,
                    "frames": generated,
                    "frames_per_s": generated / elapsed,
                    "total_frames_per_s": batch * generated / elapsed,
                    "rtf": elapsed / audio_seconds,
                    "time_to_first_frame_s": first,
                    "ms_per_frame": 1000 * (elapsed - first) / max(1, generated - 1),
                    "peak_memory_mb": _peak_memory_mb(device),
                }
            )
    return rows


FAMILY = {"name": "local", "run": run_benchmark, "sizes": SIZES, "modes": MODES}


def format_table(rows: list[dict]) -> str:
    header = (
        f"{'size':>5} {'device':>6} {'dtype':>8} {'mode':>8} {'batch':>5} {'frames/s':>9} {'tot f/s':>8} "
        f"{'RTF':>7} {'TTFF s':>7} {'ms/frame':>9} {'peak MB':>8}"
    )
    lines = [header]
    for r in rows:
        lines.append(
            f"{r['size']:>5} {r['device']:>6} {r['dtype']:>8} {r['mode']:>8} {r['batch']:>5} {r['frames_per_s']:>9.1f} "
            f"{r['total_frames_per_s']:>8.1f} {r['rtf']:>7.3f} {r['time_to_first_frame_s']:>7.3f} "
            f"{r['ms_per_frame']:>9.2f} {r['peak_memory_mb']:>8.0f}"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", choices=SIZES, default="tiny")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--prompt-len", type=int, default=64)
    parser.add_argument("--device", default=None)
    parser.add_argument("--dtype", default=None, help="float32 / bfloat16 / float16")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--greedy", action="store_true", help="argmax instead of the released sampling preset")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (1 is steadiest on a busy host)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = run_benchmark(
        size=args.size, batch_sizes=tuple(args.batch), modes=tuple(args.modes), frames=args.frames,
        prompt_len=args.prompt_len, device=args.device, dtype=args.dtype, repeats=args.repeats, greedy=args.greedy,
    )
    print(format_table(rows))


if __name__ == "__main__":
    main()
