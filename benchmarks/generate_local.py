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
import time

import torch
from _common import (
    MODES,
    add_run_arguments,
    build_model,
    format_table,
    mode_kwargs,
    resolve_device_dtype,
    result_row,
    run_kwargs,
    timed_generate,
)
from transformers.generation.streamers import BaseStreamer

from codectts.configuration.moss.local import CodecTTSLocalConfig
from codectts.modeling.moss.local import CodecTTSLocalForConditionalGeneration

SIZES = ("tiny", "1.7b")


def benchmark_config(size: str) -> CodecTTSLocalConfig:
    if size == "1.7b":  # released MOSS-TTS-Local-Transformer: Qwen3-1.7B backbone, local 4 x 1536, 32 codebooks
        config = CodecTTSLocalConfig()
    elif size == "tiny":
        config = CodecTTSLocalConfig(
            text_config=dict(
                vocab_size=2048,
                hidden_size=128,
                intermediate_size=384,
                num_hidden_layers=4,
                num_attention_heads=4,
                num_key_value_heads=2,
                head_dim=32,
            ),
            local_num_layers=2,
            local_hidden_size=96,
            local_intermediate_size=256,
            adapter_intermediate_size=128,
            n_vq=32,
            audio_vocab_size=1024,
            audio_pad_code=1024,
            pad_token_id=0,
            audio_start_token_id=1,
            audio_end_token_id=2,
            im_start_token_id=3,
            im_end_token_id=4,
            audio_user_slot_token_id=5,
            audio_assistant_gen_slot_token_id=6,
            audio_assistant_delay_slot_token_id=7,
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
    device, torch_dtype = resolve_device_dtype(device, dtype)
    config = benchmark_config(size)
    model = build_model(CodecTTSLocalForConditionalGeneration, config, device, torch_dtype)
    sampling = dict(do_sample=False) if greedy else dict(do_sample=True)  # released preset otherwise
    rows = []
    for batch in batch_sizes:
        generator = torch.Generator().manual_seed(batch)
        ids = torch.randint(0, config.audio_vocab_size, (batch, prompt_len, config.num_channels), generator=generator)
        ids[..., 0] = torch.randint(8, config.vocab_size, (batch, prompt_len), generator=generator)
        ids[:, -1, 0], ids[:, -1, 1:] = config.audio_start_token_id, config.audio_pad_code
        ids = ids.to(device)
        mask = torch.ones(batch, prompt_len, dtype=torch.long, device=device)
        for mode in modes:
            kwargs = dict(attention_mask=mask, max_new_tokens=frames, **sampling, **mode_kwargs(mode, device))
            elapsed, first, generated = timed_generate(model, ids, kwargs, device, repeats, _FirstFrameTimer)
            rows.append(
                result_row(
                    family="local",
                    size=size,
                    device=device,
                    dtype=torch_dtype,
                    mode=mode,
                    batch=batch,
                    prompt_len=prompt_len,
                    frame_rate=config.frame_rate,
                    elapsed=elapsed,
                    first=first,
                    generated=generated,
                    steps_after_first=generated - 1,
                )
            )
    return rows


FAMILY = {"name": "local", "run": run_benchmark, "sizes": SIZES, "modes": MODES}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", choices=SIZES, default="tiny")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    add_run_arguments(parser, frames=32)
    args = parser.parse_args(argv)
    rows = run_benchmark(size=args.size, modes=tuple(args.modes), **run_kwargs(args))
    print(format_table(rows))


if __name__ == "__main__":
    main()
