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
one dict per row with the keys of ``_common.format_table``; shared timing helpers live in ``benchmarks/_common.py``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from transformers.generation.streamers import BaseStreamer

sys.path.insert(0, str(Path(__file__).parent))  # the sibling modules below, also when imported from elsewhere
from _common import (  # noqa: E402
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

DELAY_SIZES = ("tiny", "1.7b", "8b")


# --- delay family ---------------------------------------------------------------------------------------------------


def delay_benchmark_config(size: str):
    from codectts.configuration.moss.delay import CodecTTSDelayConfig

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
        from codectts.modeling.moss.generation_delay import DelayAudioFrameStreamer

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
    from codectts.modeling.moss.delay import CodecTTSDelayForConditionalGeneration

    device, torch_dtype = resolve_device_dtype(device, dtype)
    config = delay_benchmark_config(size)
    model = build_model(CodecTTSDelayForConditionalGeneration, config, device, torch_dtype)
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
            kwargs.update(mode_kwargs(mode, device))
            elapsed, first, generated = timed_generate(
                model, ids, kwargs, device, repeats, lambda: _FrameTimer(config.n_vq, config.audio_pad_code)
            )
            # frames: every step emits one row; after the staircase fills, each row completes one frame
            audio_frames = max(0, generated - config.n_vq + 1)
            rows.append(
                result_row(
                    family="delay",
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
                    steps_after_first=audio_frames - 1,
                )
            )
    return rows


def _delay_family():
    return {"run": run_delay_benchmark, "sizes": DELAY_SIZES, "modes": MODES}


def _local_family():
    from generate_local import FAMILY  # the Local generator's benchmark (benchmarks/generate_local.py)

    return FAMILY


FAMILIES = {"delay": _delay_family, "local": _local_family}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--family", nargs="+", choices=sorted(FAMILIES), default=sorted(FAMILIES))
    parser.add_argument(
        "--size", default="tiny", help="tiny (CPU), or a released size: 1.7b / 8b (delay), 1.7b (local)"
    )
    parser.add_argument(
        "--modes", nargs="+", choices=MODES, default=None, help="default: eager static (+compiled on GPU)"
    )
    add_run_arguments(parser, frames=64)
    args = parser.parse_args(argv)
    on_gpu = (args.device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")
    modes = tuple(args.modes or (MODES if on_gpu else ("eager", "static")))
    rows = []
    for name in args.family:
        family = FAMILIES[name]()
        if args.size not in family["sizes"]:
            print(f"[{name}] no size {args.size!r} (has {family['sizes']}); skipped", file=sys.stderr)
            continue
        rows += family["run"](size=args.size, modes=modes, **run_kwargs(args))
    print(format_table(rows))


if __name__ == "__main__":
    main()
