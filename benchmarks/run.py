"""One entry point for speed and memory: a table per family (Delay, Local, codec, streaming synthesis).

Generators (random weights): prefill time, ms per decode row (Delay) / per frame (Local), time to first audio frame,
weight memory and peak memory increase, at every (size, dtype, mode, batch). The Delay rows are measured twice,
alternating in the same process: ``main`` = the plain decode path (full text head every row, what main did before
the text-head shortcut) and ``new`` = the current code; ``speedup`` = main / new ms per row. ``int8`` = torchao
int8 weight-only on the backbone and local linear layers (what ``from_pretrained(...,
quantization_config=TorchAoConfig(Int8WeightOnlyConfig(), modules_to_not_convert=...))`` does), embeddings and heads
in float32; ``int8-all`` = every linear layer and embedding table in int8, heads included (what
``quantization_config=codectts.modeling.quantization.int8_weight_only_config(config)`` does); ``agree`` = fraction of
greedy tokens identical to float32's in the first ``--rows`` generated rows.

    python benchmarks/run.py                                   # tiny configs, CPU, everything
    python benchmarks/run.py --threads 1 --sizes big --families delay local --batch 1 4 8 --modes eager
    python benchmarks/run.py --device cuda --sizes 8b --families delay --dtypes bfloat16 --modes eager compiled
    python benchmarks/run.py --device cuda --sizes 1.7b --families local --dtypes bfloat16 --modes eager compiled

Sizes: ``tiny`` (CPU smoke), ``big`` (CPU-feasible: Qwen3 hidden 768, 12 layers, vocab 155,648, n_vq 32, audio
vocab 1024; Local: 4 local layers of width 768), released ``1.7b`` / ``8b`` (GPU). Timings: best of ``--repeats``.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import build_model, mode_kwargs, sync
from audio_tokenizer import PeakMemory

BIG_TEXT = {"vocab_size": 155648, "hidden_size": 768, "intermediate_size": 2048, "num_hidden_layers": 12,
                "num_attention_heads": 12, "num_key_value_heads": 4, "head_dim": 64}  # fmt: skip
BIG_LOCAL = {"local_num_layers": 4, "local_hidden_size": 768, "local_intermediate_size": 2048,
             "adapter_intermediate_size": 1024}  # fmt: skip


def delay_config(size: str):
    from generate import delay_benchmark_config

    from codectts.configuration.moss.delay import CodecTTSDelayConfig

    if size == "big":
        return CodecTTSDelayConfig(text_config=BIG_TEXT, n_vq=32, audio_vocab_size=1024)
    return delay_benchmark_config(size)


def local_config(size: str):
    from generate_local import benchmark_config

    from codectts.configuration.moss.local import CodecTTSLocalConfig

    if size != "big":
        return benchmark_config(size)
    config = CodecTTSLocalConfig(text_config=BIG_TEXT, n_vq=32, audio_vocab_size=1024, **BIG_LOCAL)
    config.audio_end_token_id = config.vocab_size  # unreachable: every run lasts exactly the asked frames
    return config


def weight_bytes(model) -> int:
    def size(tensor):
        if hasattr(tensor, "__tensor_flatten__"):  # torchao's quantized weights: their inner tensors
            return sum(size(getattr(tensor, name)) for name in tensor.__tensor_flatten__()[0])
        return tensor.numel() * tensor.element_size()

    return sum(size(p) for p in model.parameters())


def quantize_int8(model, everything: bool = False) -> None:
    """Int8 weight-only linear layers except heads (TorchAoConfig's default at load), or every linear layer and
    embedding table (``int8_weight_only_config``)."""
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    def wanted(module, name):
        if everything:
            return isinstance(module, (torch.nn.Linear, torch.nn.Embedding))
        return isinstance(module, torch.nn.Linear) and "lm_head" not in name

    quantize_(model, Int8WeightOnlyConfig(), filter_fn=wanted)


@contextlib.contextmanager
def plain_text_head(enabled: bool):
    """The Delay decode path without the text-head shortcut (the baseline: every row reads the whole head)."""
    from codectts.modeling.moss import generation_delay

    if not enabled or not hasattr(generation_delay, "TextHeadShortcut"):  # (older code: always the plain path)
        yield
        return
    original = generation_delay.TextHeadShortcut.update
    generation_delay.TextHeadShortcut.update = lambda self, unfinished: None
    try:
        yield
    finally:
        generation_delay.TextHeadShortcut.update = original


def prompt(family: str, config, batch: int, rows: int, device):
    generator = torch.Generator().manual_seed(batch)
    ids = torch.full((batch, rows, 1 + config.n_vq), config.audio_pad_code)
    if family == "local":
        ids[..., 1:] = torch.randint(0, config.audio_vocab_size, ids[..., 1:].shape, generator=generator)
    ids[..., 0] = torch.randint(8, config.text_config.vocab_size, (batch, rows), generator=generator)
    ids[:, -1, 0], ids[:, -1, 1:] = config.audio_start_token_id, config.audio_pad_code
    return ids.to(device)


def generate_kwargs(family: str, config, mode: str, device, new_rows: int) -> dict:
    kwargs = dict(max_new_tokens=new_rows, do_sample=False, audio_do_sample=False, **mode_kwargs(mode, device))
    if family == "delay":  # stay in one audio block: one frame per row
        kwargs["suppress_tokens"] = [config.audio_assistant_delay_slot_token_id]
    return kwargs


def timed(model, ids, kwargs, device) -> tuple[float, torch.Tensor]:
    sync(device)
    start = time.perf_counter()
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones(ids.shape[:2], dtype=torch.long, device=device), **kwargs)
    sync(device)
    return time.perf_counter() - start, out


def run_generator(family, size, dtype_name, modes, batches, rows, prompt_rows, repeats, device, reference=None):
    from codectts.modeling.moss.delay import CodecTTSDelayForConditionalGeneration
    from codectts.modeling.moss.local import CodecTTSLocalForConditionalGeneration

    config = delay_config(size) if family == "delay" else local_config(size)
    model_class = CodecTTSDelayForConditionalGeneration if family == "delay" else CodecTTSLocalForConditionalGeneration
    dtype = torch.bfloat16 if dtype_name == "bfloat16" else torch.float32
    model = build_model(model_class, config, device, dtype)
    if dtype_name.startswith("int8"):
        quantize_int8(model, everything=dtype_name == "int8-all")
    variants = ("main", "new") if family == "delay" else ("new",)
    results, outputs = [], {}
    for batch in batches:
        ids = prompt(family, config, batch, prompt_rows, device)
        for mode in modes:
            best = {v: [float("inf"), float("inf")] for v in variants}
            with PeakMemory(device) as memory:
                for repeat in range(repeats + 1):  # the first round warms up (and compiles)
                    for variant in variants:  # alternating: same load for both
                        with plain_text_head(variant == "main"):
                            one, _ = timed(model, ids, generate_kwargs(family, config, mode, device, 1), device)
                            many, out = timed(model, ids, generate_kwargs(family, config, mode, device, rows), device)
                        if repeat:
                            best[variant] = [min(best[variant][0], one), min(best[variant][1], many)]
                        if variant == "new" and mode == modes[0]:
                            outputs[batch] = out[:, prompt_rows:]
            for variant in variants:
                one, many = best[variant]
                per_row = (many - one) / (rows - 1)
                # the first complete frame: right after prefill (Local), after the delay staircase (Delay)
                first_audio = one + (config.n_vq - 1) * per_row if family == "delay" else one
                agree = ""
                if reference is not None and batch in reference:
                    agree = f"{(outputs[batch] == reference[batch]).float().mean().item():.2f}"
                results.append({"family": family, "size": size, "dtype": dtype_name, "mode": mode, "batch": batch,
                                    "variant": variant, "prefill_ms": 1e3 * one, "ms_per_row": 1e3 * per_row,
                                    "first_audio_s": first_audio, "weights_mb": weight_bytes(model) / 2**20,
                                    "peak_mb": memory.peak_mib, "agree": agree})  # fmt: skip
            if family == "delay":
                results[-1]["speedup"] = results[-2]["ms_per_row"] / results[-1]["ms_per_row"]
    return results, outputs


def print_generator_table(rows) -> None:
    unit = "ms/row" if rows[0]["family"] == "delay" else "ms/frame"
    print(f"\n## {rows[0]['family']} generator")
    print(
        f"| size | dtype | mode | batch | path | prefill+1 ms | {unit} | speedup | first audio s | weights MB | "
        f"peak +MB | greedy agree |"
    )
    print("|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        speedup = f"{r['speedup']:.2f}x" if "speedup" in r else ""
        print(
            f"| {r['size']} | {r['dtype']} | {r['mode']} | {r['batch']} | {r['variant']} | {r['prefill_ms']:.1f} | "
            f"{r['ms_per_row']:.2f} | {speedup} | {r['first_audio_s']:.3f} | {r['weights_mb']:.0f} | "
            f"{r['peak_mb']:.0f} | {r['agree']} |"
        )
    sys.stdout.flush()


def run_codec(sizes, device, repeats) -> None:
    from audio_tokenizer import benchmark

    from codectts.configuration.moss.audio_tokenizer import CodecTTSAudioTokenizerConfig
    from codectts.modeling.moss.audio_tokenizer import CodecTTSAudioTokenizerModel

    print("\n## codec (audio tokenizer)")
    print("| config | op | mode | audio s | batch | RTF | call ms p50/p95 | peak +MiB |")
    print("|---|---|---|---:|---:|---:|---|---:|")
    for size in sizes:
        full = size in ("1.7b", "8b")
        config = CodecTTSAudioTokenizerConfig() if full else CodecTTSAudioTokenizerConfig.tiny()
        torch.manual_seed(0)
        model = CodecTTSAudioTokenizerModel(config).eval().to(device)
        for op, mode, sec, batch, rtf, lat, mem in benchmark(model, 2.0 if full else 10.0, 1, [1], repeats, device):
            print(
                f"| {'released' if full else 'tiny'} | {op} | {mode} | {sec:.1f} | {batch} | {rtf:.4f} | {lat} | "
                f"{mem:.1f} |"
            )
        sys.stdout.flush()


def run_streaming(batches) -> None:
    from streaming import run

    print("\n## streaming synthesis (tiny models: generate + codec, sampled)")
    print("| family | batch | chunk frames | first audio s | streaming total s | offline total s | total ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in run(["delay", "local"], batches, [1, 4], 60):
        first = f"{r['ttfa']:.3f}" if r["ttfa"] is not None else "-"
        print(
            f"| {r['family']} | {r['batch']} | {r['chunk']} | {first} | {r['total']:.3f} | {r['offline']:.3f} | "
            f"{r['total'] / r['offline']:.2f} |"
        )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="+", default=["delay", "local", "codec", "streaming"],
                        choices=["delay", "local", "codec", "streaming"])  # fmt: skip
    parser.add_argument("--sizes", nargs="+", default=["tiny"], help="tiny, big, 1.7b, 8b")
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16", "int8", "int8-all"],
                        choices=["float32", "bfloat16", "int8", "int8-all"])  # fmt: skip
    parser.add_argument("--modes", nargs="+", default=None, help="eager static compiled (default: eager static)")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--rows", type=int, default=16, help="generated rows (Delay) / frames (Local) per run")
    parser.add_argument("--prompt-rows", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    modes = tuple(args.modes or ("eager", "static"))
    import codectts

    print(f"# codectts from {Path(codectts.__file__).parents[1]}, torch {torch.__version__}, device {device}, "
          f"threads {torch.get_num_threads()}, rows {args.rows}, prompt rows {args.prompt_rows}, "
          f"best of {args.repeats}")  # fmt: skip
    for family in ("delay", "local"):
        if family not in args.families:
            continue
        for size in args.sizes:
            rows, reference = [], None
            for dtype_name in args.dtypes:
                if dtype_name.startswith("int8"):
                    try:
                        import torchao  # noqa: F401
                    except ImportError:
                        print("(int8 skipped: pip install torchao)")
                        continue
                result, outputs = run_generator(family, size, dtype_name, modes, tuple(args.batch), args.rows,
                                                args.prompt_rows, args.repeats, device, reference)  # fmt: skip
                if dtype_name == "float32":
                    reference = outputs
                rows += result
            print_generator_table(rows)
    if "codec" in args.families:
        run_codec(args.sizes, device, args.repeats)
    if "streaming" in args.families:
        run_streaming([b for b in args.batch if b <= 4])


if __name__ == "__main__":
    main()
