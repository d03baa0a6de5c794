"""Generation speed of the codec-token generators, one table over model families.

Per (family, size, batch, mode): frames/s per sequence and in total, real-time factor (compute time / audio time at
the codec frame rate, 12.5 frames/s; < 1 is faster than real time), time to first audio frame, mean time per frame
(= per decode step for the delay family), and peak memory (CUDA allocator peak on GPU, process peak RSS on CPU).

Modes: ``eager`` (dynamic cache, no compile), ``static`` (static cache, no compile), ``compiled`` (static cache +
``torch.compile(fullgraph=True)`` of the decode step; CUDA graphs via ``mode="reduce-overhead"`` on GPU).

Random weights. For the delay family the prompt ends on an ``<|audio_start|>`` row and the delay slot is suppressed
(`suppress_tokens`), so every run stays in one audio block and emits exactly one frame per step (the first ``n_vq``
steps fill the delay staircase: the first *complete* frame arrives at step ``n_vq``, which the time to first frame
reports).

    python benchmarks/generate.py                                    # tiny configs on CPU, every family
    python benchmarks/generate.py --family delay --size 8b --device cuda --dtype bfloat16 --modes eager compiled

Families register in ``FAMILIES`` (name -> loader returning ``{"run": run_benchmark, "sizes": ..., "modes": ...}``;
``run_benchmark(size=, batch_sizes=, modes=, frames=, prompt_len=, device=, dtype=, repeats=, greedy=)`` returns
one dict per row with the keys of :func:`format_table`).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import torch
from transformers import CompileConfig
from transformers.generation.streamers import BaseStreamer

MODES = ("eager", "static", "compiled")
DELAY_SIZES = ("tiny", "1.7b", "8b")


# --- delay family ---------------------------------------------------------------------------------------------------


def delay_benchmark_config(size: str):
    from codectts.configuration.delay import CodecTTSDelayConfig

    qwen3 = dict(head_dim=128, rope_theta=1e6, rms_norm_eps=1e-6, max_position_embeddings=40960, vocab_size=155648)
    if size == "8b":  # MOSS-TTS 8B: Qwen3-8B backbone, 32 codebooks
        text = dict(qwen3, hidden_size=4096, intermediate_size=12288, num_hidden_layers=36, num_attention_heads=32,
                    num_key_value_heads=8)  # fmt: skip
    elif size == "1.7b":  # MOSS-VoiceGenerator: Qwen3-1.7B backbone
        text = dict(qwen3, hidden_size=2048, intermediate_size=6144, num_hidden_layers=28, num_attention_heads=16,
                    num_key_value_heads=8)  # fmt: skip
    elif size == "tiny":
        text = dict(vocab_size=2048, hidden_size=128, intermediate_size=384, num_hidden_layers=4, num_attention_heads=4,
                    num_key_value_heads=2, head_dim=32)  # fmt: skip
    else:
        raise ValueError(f"size must be one of {DELAY_SIZES}, got {size!r}")
    special = {} if size != "tiny" else dict(
        pad_token_id=0, im_start_token_id=1, im_end_token_id=2, audio_start_token_id=3, audio_end_token_id=4,
        audio_user_slot_token_id=5, audio_assistant_gen_slot_token_id=6, audio_assistant_delay_slot_token_id=7,
    )  # fmt: skip
    return CodecTTSDelayConfig(text_config=text, n_vq=32, audio_vocab_size=1024, **special)


class _FrameTimer(BaseStreamer):
    """Time of the first *complete* audio frame: the streamer hook of the delay model, timed."""

    def __init__(self, n_vq: int, pad_code: int):
        from codectts.modeling.generation_delay import DelayAudioFrameStreamer

        timer = self

        class Streamer(DelayAudioFrameStreamer):
            def on_frame(self, batch_index, frame):
                if timer.first_frame_at is None:
                    timer.first_frame_at = time.perf_counter()

        self.first_frame_at: float | None = None
        self.inner = Streamer(n_vq, pad_code)

    def put(self, value):
        self.inner.put(value)

    def end(self):
        self.inner.end()


def _sync(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _timed_generate(model, ids, kwargs, device, repeats, timer_factory):
    """Warm-up (compiles) then best of ``repeats``: (seconds, seconds to first frame or None, generated rows)."""
    with torch.no_grad():
        model.generate(ids, **kwargs)
        best = None
        for _ in range(repeats):
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            timer = timer_factory()
            _sync(device)
            start = time.perf_counter()
            out = model.generate(ids, streamer=timer, **kwargs)
            _sync(device)
            elapsed = time.perf_counter() - start
            first = None if timer.first_frame_at is None else timer.first_frame_at - start
            if best is None or elapsed < best[0]:
                best = (elapsed, first, out.shape[1] - ids.shape[1])
    return best


def run_delay_benchmark(
    size: str = "tiny",
    batch_sizes: tuple[int, ...] = (1, 8),
    modes: tuple[str, ...] = MODES,
    frames: int = 64,
    prompt_len: int = 64,
    device: str | None = None,
    dtype: str | None = None,
    repeats: int = 2,
    greedy: bool = False,
) -> list[dict]:
    from codectts.modeling.delay import CodecTTSDelayForConditionalGeneration

    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch_dtype = getattr(torch, dtype) if dtype else (torch.bfloat16 if device.type == "cuda" else torch.float32)
    config = delay_benchmark_config(size)
    torch.manual_seed(0)
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch_dtype)  # build big models directly in the target dtype
    try:
        with torch.device(device):
            model = CodecTTSDelayForConditionalGeneration(config).eval()
    finally:
        torch.set_default_dtype(default_dtype)
    sampling = dict(do_sample=False) if greedy else dict(do_sample=True)  # released preset otherwise
    rows = []
    for batch in batch_sizes:
        generator = torch.Generator().manual_seed(batch)
        ids = torch.full((batch, prompt_len, 1 + config.n_vq), config.audio_pad_code)
        ids[..., 0] = torch.randint(8, config.vocab_size, (batch, prompt_len), generator=generator)
        ids[:, -1, 0] = config.audio_start_token_id
        ids = ids.to(device)
        mask = torch.ones(batch, prompt_len, dtype=torch.long, device=device)
        for mode in modes:
            never_flush = [config.audio_assistant_delay_slot_token_id]
            kwargs = dict(attention_mask=mask, max_new_tokens=frames, suppress_tokens=never_flush, **sampling)
            if mode in ("static", "compiled"):
                kwargs["cache_implementation"] = "static"
            if mode == "compiled":
                compile_config = CompileConfig(
                    fullgraph=True, mode="reduce-overhead" if device.type == "cuda" else None
                )
                compile_config._compile_all_devices = True  # also on CPU
                kwargs["compile_config"] = compile_config
            else:
                kwargs["disable_compile"] = True
            elapsed, first, generated = _timed_generate(
                model, ids, kwargs, device, repeats, lambda: _FrameTimer(config.n_vq, config.audio_pad_code)
            )
            # frames: every step emits one row; after the staircase fills, each row completes one frame
            audio_frames = max(0, generated - config.n_vq + 1)
            steady = elapsed - (first or 0.0)
            rows.append(
                {
                    "family": "delay",
                    "size": size,
                    "device": str(device),
                    "dtype": str(torch_dtype).removeprefix("torch."),
                    "mode": mode,
                    "batch": batch,
                    "prompt_rows": prompt_len,
                    "frames": generated,
                    "frames_per_s": generated / elapsed,
                    "total_frames_per_s": batch * generated / elapsed,
                    "rtf": elapsed / (generated / config.frame_rate),
                    "time_to_first_frame_s": first if first is not None else float("nan"),
                    "ms_per_frame": 1000 * steady / max(1, audio_frames - 1),
                    "peak_memory_mb": _peak_memory_mb(device),
                }
            )
    return rows


def _delay_family():
    return {"run": run_delay_benchmark, "sizes": DELAY_SIZES, "modes": MODES}


def _local_family():
    sys.path.insert(0, str(Path(__file__).parent))
    from generate_local import FAMILY  # the Local generator's benchmark (benchmarks/generate_local.py)

    return FAMILY


FAMILIES = {"delay": _delay_family, "local": _local_family}


def format_table(rows: list[dict]) -> str:
    header = (
        f"{'family':>6} {'size':>5} {'device':>6} {'dtype':>8} {'mode':>8} {'batch':>5} {'frames/s':>9} "
        f"{'tot f/s':>8} {'RTF':>7} {'TTFF s':>7} {'ms/frame':>9} {'peak MB':>8}"
    )
    lines = [header]
    for r in rows:
        lines.append(
            f"{r['family']:>6} {r['size']:>5} {r['device']:>6} {r['dtype']:>8} {r['mode']:>8} {r['batch']:>5} "
            f"{r['frames_per_s']:>9.1f} {r['total_frames_per_s']:>8.1f} {r['rtf']:>7.3f} "
            f"{r['time_to_first_frame_s']:>7.3f} {r['ms_per_frame']:>9.2f} {r['peak_memory_mb']:>8.0f}"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--family", nargs="+", choices=sorted(FAMILIES), default=sorted(FAMILIES))
    parser.add_argument(
        "--size", default="tiny", help="tiny (CPU), or a released size: 1.7b / 8b (delay), 1.7b (local)"
    )
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument(
        "--modes", nargs="+", choices=MODES, default=None, help="default: eager static (+compiled on GPU)"
    )
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--prompt-len", type=int, default=64)
    parser.add_argument("--device", default=None)
    parser.add_argument("--dtype", default=None, help="float32 / bfloat16 / float16")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--greedy", action="store_true", help="argmax instead of the released sampling preset")
    args = parser.parse_args(argv)
    on_gpu = (args.device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")
    modes = tuple(args.modes or (MODES if on_gpu else ("eager", "static")))
    rows = []
    for name in args.family:
        family = FAMILIES[name]()
        if args.size not in family["sizes"]:
            print(f"[{name}] no size {args.size!r} (has {family['sizes']}); skipped", file=sys.stderr)
            continue
        rows += family["run"](
            size=args.size, batch_sizes=tuple(args.batch), modes=modes, frames=args.frames,
            prompt_len=args.prompt_len, device=args.device, dtype=args.dtype, repeats=args.repeats, greedy=args.greedy,
        )  # fmt: skip
    print(format_table(rows))


if __name__ == "__main__":
    main()
