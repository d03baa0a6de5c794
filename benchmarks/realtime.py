"""Latency and speed of MOSS-TTS-Realtime (the per-frame step shared by the session and ``generate_speech``).

Measures, per (size, batch):

* ``first frame ms``: prefill of the prompt + the 12-token text prefix → frame 0 (what a session does when the 12th
  text token arrives; batch 1 only);
* ``first audio ms``: the same plus decoding frame 0 through the codec's streaming decoder;
* ``.. precomputed``: the same two with the prompt fed ahead of the text (``start_session(precompute_prompt=True)``):
  only the 12 text rows wait for the 12th token;
* ``ms/frame``: one backbone row + the 16 local steps, mean over ``--frames`` steps (all items of the batch);
* ``RTF``: wall time / audio duration at 12.5 frames/s (per sequence; < 1 is faster than real time);
* ``peak MB``: CUDA allocator peak on GPU, process peak RSS on CPU.

Random weights (codebook-0 EOS is masked so every run produces exactly ``--frames`` frames); greedy decoding with the
repetition penalty on (the release's 1.1 over 50 frames), as the per-frame work of sampling is the same.

    python benchmarks/realtime.py                                   # tiny config on CPU, batch 1 and 8
    python benchmarks/realtime.py --size 1.7b --device cuda --dtype bfloat16 --frames 200
"""

from __future__ import annotations

import argparse
import time

import torch
from _common import build_model, peak_memory_mb, resolve_device_dtype, sync

from codectts.configuration.moss.audio_tokenizer import CodecTTSAudioTokenizerConfig
from codectts.configuration.moss.realtime import CodecTTSRealtimeConfig
from codectts.modeling.moss.audio_tokenizer import CodecTTSAudioTokenizerModel
from codectts.modeling.moss.realtime import CodecTTSRealtimeForConditionalGeneration
from codectts.modeling.moss.realtime_generation import RealtimeFrameStepper, RealtimeSampling, _text_prefix_rows

TINY = dict(
    text_config=dict(
        vocab_size=151936, hidden_size=64, intermediate_size=192, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, pad_token_id=151643,
    ),
    local_config=dict(
        vocab_size=1027, hidden_size=64, intermediate_size=192, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, rope_parameters={"rope_type": "linear", "rope_theta": 1e6, "factor": 1.0},
    ),
)


def make_config(size: str) -> CodecTTSRealtimeConfig:
    return CodecTTSRealtimeConfig(**TINY) if size == "tiny" else CodecTTSRealtimeConfig()  # defaults = release


def mask_eos(model) -> None:
    eos = model.config.audio_eos_code

    def hook(module, inputs, output):
        return output.index_fill(-1, torch.tensor([eos], device=output.device), float("-inf"))

    model.lm_heads[0].register_forward_hook(hook)


def prompt_rows(config, batch: int, prompt_len: int, device) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    rows = torch.full((batch, prompt_len + config.text_lead, config.num_channels), config.audio_pad_code)
    rows[..., 0] = torch.randint(0, 150000, (batch, prompt_len + config.text_lead), generator=g)
    rows[:, prompt_len:] = _text_prefix_rows(config, rows[0, prompt_len:, 0])
    return rows.to(device)


@torch.inference_mode()
def run(model, codec, batch: int, frames: int, prompt_len: int, repeats: int, device) -> dict:
    config = model.config
    sampling = RealtimeSampling(do_sample=False, repetition_penalty=1.1, repetition_window=50)
    rows = prompt_rows(config, batch, prompt_len, device)
    text = torch.full((batch,), config.text_pad_token_id, device=device)
    best = None
    for _ in range(repeats + 1):  # the first run warms up
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        stepper = RealtimeFrameStepper(model, batch, sampling, max_frames=frames + 1)
        sync(device)
        start = time.perf_counter()
        frame = stepper.prefill(rows)
        sync(device)
        first_frame = time.perf_counter()
        first_audio = None
        if codec is not None and batch == 1:
            codec.decode(frame.T[None].clamp(max=codec.config.codebook_size - 1), use_cache=True, return_dict=False)
            sync(device)
            first_audio = time.perf_counter()
        # the same with the prompt already in the cache (precompute_prompt=True)
        early = RealtimeFrameStepper(model, batch, sampling, max_frames=2)
        early.feed(rows[:, :prompt_len])
        sync(device)
        pre_start = time.perf_counter()
        pre_frame = early.prefill(rows[:, prompt_len:])
        sync(device)
        pre_first_frame = time.perf_counter()
        if codec is not None and batch == 1:
            codec.decode(pre_frame.T[None].clamp(max=codec.config.codebook_size - 1), use_cache=True, return_dict=False)
            sync(device)
        pre_first_audio = time.perf_counter()
        del early
        step_start = time.perf_counter()
        for _ in range(frames):
            frame = stepper.step(text)
        sync(device)
        end = time.perf_counter()
        result = dict(
            first_frame_ms=1000 * (first_frame - start),
            first_audio_ms=None if first_audio is None else 1000 * (first_audio - start),
            pre_first_frame_ms=1000 * (pre_first_frame - pre_start),
            pre_first_audio_ms=None if first_audio is None else 1000 * (pre_first_audio - pre_start),
            ms_per_frame=1000 * (end - step_start) / frames,
        )
        if best is None or result["ms_per_frame"] < best["ms_per_frame"]:
            best = result
    best["rtf"] = best["ms_per_frame"] / 1000 * config.frame_rate
    best["peak_mb"] = peak_memory_mb(device)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=["tiny", "1.7b"], default="tiny")
    parser.add_argument("--device")
    parser.add_argument("--dtype")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--frames", type=int, default=50)
    parser.add_argument("--prompt-len", type=int, default=64, help="prompt rows before the 12-token text prefix")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="CPU intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device, dtype = resolve_device_dtype(args.device, args.dtype)
    model = build_model(CodecTTSRealtimeForConditionalGeneration, make_config(args.size), device, dtype)
    mask_eos(model)
    codec_config = CodecTTSAudioTokenizerConfig.tiny(codebook_size=1024) if args.size == "tiny" else CodecTTSAudioTokenizerConfig()
    codec = build_model(CodecTTSAudioTokenizerModel, codec_config, device, torch.float32)
    print(f"MOSS-TTS-Realtime {args.size} on {device} ({dtype}, {torch.get_num_threads()} CPU threads), "
          f"prompt {args.prompt_len} + 12 rows, {args.frames} frames")
    print("| batch | first frame ms | first audio ms | first frame ms (precomputed) | first audio ms (precomputed) "
          "| ms/frame | RTF | peak MB |")
    print("|---|---|---|---|---|---|---|---|")

    def ms(value):
        return "-" if value is None else f"{value:.1f}"

    for batch in args.batch:
        r = run(model, codec, batch, args.frames, args.prompt_len, args.repeats, device)
        print(f"| {batch} | {ms(r['first_frame_ms'])} | {ms(r['first_audio_ms'])} | {ms(r['pre_first_frame_ms'])} | "
              f"{ms(r['pre_first_audio_ms'])} | {r['ms_per_frame']:.2f} | {r['rtf']:.3f} | {r['peak_mb']:.0f} |")


if __name__ == "__main__":
    main()
