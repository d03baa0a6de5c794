"""Time to first audio of streaming synthesis vs. offline synthesis (generate, then decode everything).

Uses the demo's tiny random-weight models (CPU by default): prompt with a reference voice → ``stream_speech`` with
a few chunk sizes. Prints one row per (family, batch, chunk size): time to the first audio chunk, total time, audio
seconds produced and the offline total for the same generation settings.

    python benchmarks/streaming.py                       # tiny models, batch 1 and 4, chunks of 1 and 4 frames
    python benchmarks/streaming.py --batch 1 --chunk-frames 2 --max-new-tokens 120
"""

from __future__ import annotations

import argparse
import time

import torch

from codectts.demo import build_tiny_models, reference_voice, speaking_bias
from codectts.processing.moss.processor import CodecTTSProcessor
from codectts.processing.moss.streaming import stream_speech


def _inputs(processor, batch: int):
    reference = (reference_voice(1.0), 24000)
    messages = [[processor.build_user_message(text=f"Sentence number {i}.", reference=[reference])] for i in range(batch)]
    return processor(messages, mode="generation")


def run(families, batches, chunk_sizes, max_new_tokens: int) -> list[dict]:
    tokenizer, codec, delay, local = build_tiny_models(seed=0)
    rows = []
    for family in families:
        model = delay if family == "delay" else local
        processor = CodecTTSProcessor.from_model_config(model.config, tokenizer, codec)
        kwargs = dict(do_sample=True, max_new_tokens=max_new_tokens, sequence_bias=speaking_bias(model.config))
        for batch in batches:
            inputs = _inputs(processor, batch)
            torch.manual_seed(0)
            start = time.perf_counter()
            out = model.generate(**inputs, return_dict_in_generate=True, **kwargs)
            processor.decode_generation(out.sequences, input_ids=inputs["input_ids"])
            offline = time.perf_counter() - start
            for chunk_frames in chunk_sizes:
                torch.manual_seed(0)
                start = time.perf_counter()
                first, samples = None, 0
                for chunk in stream_speech(model, processor, inputs, chunk_frames=chunk_frames, **kwargs):
                    if first is None and chunk.audio.numel():
                        first = time.perf_counter() - start
                    samples += chunk.audio.numel()
                total = time.perf_counter() - start
                rows.append(dict(family=family, batch=batch, chunk=chunk_frames, ttfa=first, total=total,
                                 audio=samples / codec.config.sampling_rate, offline=offline))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", nargs="+", default=["delay", "local"], choices=["delay", "local"])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--chunk-frames", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--max-new-tokens", type=int, default=60)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = run(args.family, args.batch, args.chunk_frames, args.max_new_tokens)
    print(f"\n{'family':<7}{'batch':>6}{'chunk':>6}{'first audio s':>15}{'stream total s':>16}{'audio s':>9}"
          f"{'offline total s':>17}")
    for r in rows:
        ttfa = f"{r['ttfa']:.3f}" if r["ttfa"] is not None else "-"
        print(f"{r['family']:<7}{r['batch']:>6}{r['chunk']:>6}{ttfa:>15}{r['total']:>16.3f}{r['audio']:>9.2f}"
              f"{r['offline']:>17.3f}")


if __name__ == "__main__":
    main()
