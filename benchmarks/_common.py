"""Timing, memory and table helpers shared by the generation benchmarks (``generate.py``, ``generate_local.py``).

``benchmarks/`` is not a package: the scripts run as ``python benchmarks/x.py``, which puts this folder first on
``sys.path``, so they import this module as ``from _common import ...``.
"""

from __future__ import annotations

import argparse
import resource
import time

import torch
from transformers import CompileConfig

MODES = ("eager", "static", "compiled")


def resolve_device_dtype(device: str | None, dtype: str | None) -> tuple[torch.device, torch.dtype]:
    """CUDA if available, else CPU; bfloat16 on GPU and float32 on CPU unless ``dtype`` names one."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch_dtype = getattr(torch, dtype) if dtype else (torch.bfloat16 if device.type == "cuda" else torch.float32)
    return device, torch_dtype


def build_model(model_class, config, device: torch.device, dtype: torch.dtype):
    """A randomly initialised model in eval mode, built directly on ``device`` in ``dtype`` (big models never exist
    in float32 first)."""
    torch.manual_seed(0)
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            return model_class(config).eval()
    finally:
        torch.set_default_dtype(default_dtype)


def mode_kwargs(mode: str, device: torch.device) -> dict:
    """`generate` arguments of a benchmark mode: ``eager`` (dynamic cache), ``static`` (static cache) or
    ``compiled`` (static cache + ``torch.compile(fullgraph=True)``, CUDA graphs on GPU)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    kwargs = {}
    if mode in ("static", "compiled"):
        kwargs["cache_implementation"] = "static"
    if mode == "compiled":
        compile_config = CompileConfig(fullgraph=True, mode="reduce-overhead" if device.type == "cuda" else None)
        compile_config._compile_all_devices = True  # also on CPU
        kwargs["compile_config"] = compile_config
    else:
        kwargs["disable_compile"] = True
    return kwargs


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_mb(device: torch.device) -> float:
    """CUDA allocator peak on GPU, process peak RSS on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def timed_generate(model, ids, kwargs, device, repeats, timer_factory):
    """Warm-up (compiles) then best of ``repeats``: (seconds, seconds to first frame or None, generated rows).

    ``timer_factory()`` makes a fresh streamer with a ``first_frame_at`` attribute (a `time.perf_counter` value or
    ``None``) for every timed run.
    """
    with torch.no_grad():
        model.generate(ids, **kwargs)
        best = None
        for _ in range(repeats):
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            timer = timer_factory()
            sync(device)
            start = time.perf_counter()
            out = model.generate(ids, streamer=timer, **kwargs)
            sync(device)
            elapsed = time.perf_counter() - start
            first = None if timer.first_frame_at is None else timer.first_frame_at - start
            if best is None or elapsed < best[0]:
                best = (elapsed, first, out.shape[1] - ids.shape[1])
    return best


def result_row(
    *,
    family: str,
    size: str,
    device: torch.device,
    dtype: torch.dtype,
    mode: str,
    batch: int,
    prompt_len: int,
    frame_rate: float,
    elapsed: float,
    first: float | None,
    generated: int,
    steps_after_first: int,
) -> dict:
    """One table row. ``generated`` rows took ``elapsed`` seconds; ``steps_after_first`` frames followed the first
    complete one (their mean time is ``ms_per_frame``)."""
    return {
        "family": family,
        "size": size,
        "device": str(device),
        "dtype": str(dtype).removeprefix("torch."),
        "mode": mode,
        "batch": batch,
        "prompt_rows": prompt_len,
        "frames": generated,
        "frames_per_s": generated / elapsed,
        "total_frames_per_s": batch * generated / elapsed,
        "rtf": elapsed / (generated / frame_rate),
        "time_to_first_frame_s": first if first is not None else float("nan"),
        "ms_per_frame": 1000 * (elapsed - (first or 0.0)) / max(1, steps_after_first),
        "peak_memory_mb": peak_memory_mb(device),
    }


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


def add_run_arguments(parser: argparse.ArgumentParser, frames: int) -> None:
    """The command-line options every generation benchmark shares (see :func:`run_kwargs`)."""
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--frames", type=int, default=frames)
    parser.add_argument("--prompt-len", type=int, default=64)
    parser.add_argument("--device", default=None)
    parser.add_argument("--dtype", default=None, help="float32 / bfloat16 / float16")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--greedy", action="store_true", help="argmax instead of the released sampling preset")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (1 is steadiest on a busy host)")


def run_kwargs(args: argparse.Namespace) -> dict:
    """Keyword arguments of a family's ``run_benchmark`` from the options of :func:`add_run_arguments` (also applies
    ``--threads``)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    return dict(
        batch_sizes=tuple(args.batch), frames=args.frames, prompt_len=args.prompt_len, device=args.device,
        dtype=args.dtype, repeats=args.repeats, greedy=args.greedy,
    )  # fmt: skip
