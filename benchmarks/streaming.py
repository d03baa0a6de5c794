"""Time to first audio of streaming synthesis vs. offline synthesis (generate, then decode everything).

Random-weight models (CPU by default): ``--size tiny`` uses the demo's tiny models and a prompt with a reference
voice; ``--size big`` uses the CPU-feasible big generators of ``run.py`` (Qwen3 hidden 768, 12 layers, vocabulary
155,648, n_vq 32) with the codec in its released 1.77 B layout, where per-call costs are what they are on real
models (each streaming codec call reads all decoder weights). Prints one row per (family, batch, chunk size): time
to the first audio chunk, total time, audio seconds produced and the offline total (generate, then decode) for the
same generation settings and seed.

    python benchmarks/streaming.py                       # tiny models, batch 1 and 4, chunks of 1 and 4 frames
    python benchmarks/streaming.py --batch 1 --chunk-frames 2 --max-new-tokens 120
    python benchmarks/streaming.py --size big --threads 1 --batch 1 --max-new-tokens 64
    python benchmarks/streaming.py --size big --device cuda --dtype bfloat16 --batch 1 8 --max-new-tokens 256
"""

from __future__ import annotations

import argparse
import time

import torch

from codectts.demo import build_tiny_models, reference_voice, speaking_bias
from codectts.processing.moss.processor import CodecTTSProcessor
from codectts.processing.moss.streaming import stream_speech


def _inputs(processor, batch: int, reference: bool = True):
    voice = [(reference_voice(1.0), 24000)] if reference else None
    messages = [[processor.build_user_message(text=f"Sentence number {i}.", reference=voice)] for i in range(batch)]
    return processor(messages, mode="generation")


def build_big_models(families):
    """The tiny tokenizer (ids fit any vocabulary), the released-layout codec and the big generators of run.py."""
    from run import BIG_LOCAL, BIG_TEXT

    from codectts.configuration.moss.audio_tokenizer import CodecTTSAudioTokenizerConfig
    from codectts.configuration.moss.delay import CodecTTSDelayConfig
    from codectts.configuration.moss.local import CodecTTSLocalConfig
    from codectts.demo import build_tiny_tokenizer, special_token_ids
    from codectts.modeling.moss.audio_tokenizer import CodecTTSAudioTokenizerModel
    from codectts.modeling.moss.delay import CodecTTSDelayForConditionalGeneration
    from codectts.modeling.moss.local import CodecTTSLocalForConditionalGeneration

    torch.manual_seed(0)
    tokenizer = build_tiny_tokenizer()
    ids = special_token_ids(tokenizer)
    codec = CodecTTSAudioTokenizerModel(CodecTTSAudioTokenizerConfig()).eval()
    size = codec.config.codebook_size
    audio = dict(n_vq=32, audio_vocab_size=size, audio_pad_code=size, sampling_rate=codec.config.sampling_rate)
    delay = local = None
    if "delay" in families:
        delay = CodecTTSDelayForConditionalGeneration(CodecTTSDelayConfig(text_config=BIG_TEXT, **audio, **ids)).eval()
    if "local" in families:
        config = CodecTTSLocalConfig(text_config=BIG_TEXT, **BIG_LOCAL, **audio, **ids)
        local = CodecTTSLocalForConditionalGeneration(config).eval()
    return tokenizer, codec, delay, local


def run(
    families,
    batches,
    chunk_sizes,
    max_new_tokens: int,
    size: str = "tiny",
    repeats: int = 1,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> list[dict]:
    tokenizer, codec, delay, local = build_tiny_models(seed=0) if size == "tiny" else build_big_models(families)
    codec = codec.to(device)  # the codec stays float32 (its quantizer looks codes up in float32)
    delay, local = (m.to(device=device, dtype=dtype) if m is not None else None for m in (delay, local))
    rows = []
    for family in families:
        model = delay if family == "delay" else local
        processor = CodecTTSProcessor.from_model_config(model.config, tokenizer, codec)
        kwargs = dict(do_sample=True, max_new_tokens=max_new_tokens, sequence_bias=speaking_bias(model.config))
        for batch in batches:
            inputs = _inputs(processor, batch, reference=size == "tiny").to(device)
            if size != "tiny":  # warm-up (first calls allocate)
                list(stream_speech(model, processor, inputs, chunk_frames=1, **dict(kwargs, max_new_tokens=2)))
            # Offline and streaming runs alternate (same host load for both); each keeps its best of `repeats`.
            best: dict = {}
            for _ in range(repeats):
                torch.manual_seed(0)
                start = time.perf_counter()
                out = model.generate(**inputs, return_dict_in_generate=True, **kwargs)
                processor.decode_generation(out.sequences, input_ids=inputs["input_ids"])
                best["offline"] = min(best.get("offline", float("inf")), time.perf_counter() - start)
                for chunk_frames in chunk_sizes:
                    torch.manual_seed(0)
                    start = time.perf_counter()
                    first, samples = None, 0
                    for chunk in stream_speech(model, processor, inputs, chunk_frames=chunk_frames, **kwargs):
                        if first is None and chunk.audio.numel():
                            first = time.perf_counter() - start
                        samples += chunk.audio.numel()
                    total = time.perf_counter() - start
                    old_total, old_first, _ = best.get(chunk_frames, (float("inf"), None, 0))
                    if total < old_total:
                        best[chunk_frames] = (total, first, samples)
            for chunk_frames in chunk_sizes:
                total, first, samples = best[chunk_frames]
                rows.append(
                    dict(
                        family=family,
                        batch=batch,
                        chunk=chunk_frames,
                        ttfa=first,
                        total=total,
                        audio=samples / codec.config.sampling_rate,
                        offline=best["offline"],
                    )
                )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", nargs="+", default=["delay", "local"], choices=["delay", "local"])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--chunk-frames", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--max-new-tokens", type=int, default=60)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="generators' dtype")
    parser.add_argument("--size", default="tiny", choices=["tiny", "big"])
    parser.add_argument("--repeats", type=int, default=1, help="best of N (offline and streaming alternate)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = run(
        args.family,
        args.batch,
        args.chunk_frames,
        args.max_new_tokens,
        args.size,
        args.repeats,
        args.device,
        getattr(torch, args.dtype),
    )
    print(
        f"\n{'family':<7}{'batch':>6}{'chunk':>6}{'first audio s':>15}{'stream total s':>16}{'audio s':>9}"
        f"{'offline total s':>17}{'stream/offline':>16}"
    )
    for r in rows:
        ttfa = f"{r['ttfa']:.3f}" if r["ttfa"] is not None else "-"
        print(
            f"{r['family']:<7}{r['batch']:>6}{r['chunk']:>6}{ttfa:>15}{r['total']:>16.3f}{r['audio']:>9.2f}"
            f"{r['offline']:>17.3f}{r['total'] / r['offline']:>16.2f}"
        )


if __name__ == "__main__":
    main()
