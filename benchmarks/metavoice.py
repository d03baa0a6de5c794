"""MetaVoice-1B generation speed: first-stage tokens/s and real-time factor, batch 1 and 8, per cache mode.

Per (size, batch, mode): first-stage tokens/s per sequence and in total (guidance on: the conditional and the
speaker-unconditional copies run in one batched forward, as the original's fast path does), the real-time factor of
the first stage (compute time / audio time; 2 tokens per 75 Hz EnCodec frame; < 1 is faster than real time) and of
the whole chain (first stage + second stage + EnCodec decode of the 8 codebooks), and peak memory.

Modes: ``eager`` (DynamicCache), ``static`` (static cache), ``compiled`` (static cache + ``torch.compile`` of the decode
step; CUDA graphs via ``mode="reduce-overhead"`` on GPU). Random weights; end-of-audio is suppressed
(``min_new_tokens``) so every run generates exactly ``--tokens`` tokens.

    python benchmarks/metavoice.py                                   # tiny config on CPU
    python benchmarks/metavoice.py --size 1b --device cuda --dtype bfloat16 --modes static compiled

Reference point: the original fast path (gpt-fast port, batch 1 only, bf16, static cache + compile) reports
382 tokens/s on an H100 (metavoice-src README).
"""

from __future__ import annotations

import argparse
import resource
import time

import torch
from transformers import CompileConfig, EncodecConfig

MODES = ("eager", "static", "compiled")
SIZES = {
    # the released checkpoints' configuration (first stage 1.2 B, second stage 14.5 M, speaker encoder 1.4 M)
    "1b": dict(
        first=dict(hidden_size=2048, num_hidden_layers=24, num_attention_heads=16, max_position_embeddings=2048),
        second=dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=6, block_size=1024),
        speaker=dict(hidden_size=256, embedding_size=256),
        codec=dict(),  # EnCodec 24 kHz as released (facebook/encodec_24khz architecture)
    ),
    "tiny": dict(
        first=dict(
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=1024,
            speaker_embedding_dim=64,
        ),
        second=dict(
            hidden_size=48, num_hidden_layers=2, num_attention_heads=4, block_size=512, speaker_embedding_dim=64
        ),
        speaker=dict(hidden_size=48, embedding_size=64),
        codec=dict(num_filters=4, hidden_size=16, codebook_dim=16, num_residual_layers=1, num_lstm_layers=1),
    ),
}
FRAME_RATE = 75.0


def build(size: str, device: torch.device, dtype: torch.dtype):
    from codectts.configuration.metavoice import (
        MetaVoiceConfig,
        MetaVoiceFirstStageConfig,
        MetaVoiceSecondStageConfig,
        MetaVoiceSpeakerEncoderConfig,
    )
    from codectts.modeling.metavoice import MetaVoiceForTextToSpeech

    spec = SIZES[size]
    codec = EncodecConfig(target_bandwidths=[1.5, 3.0, 6.0, 12.0, 24.0], **spec["codec"])
    config = MetaVoiceConfig(
        first_stage_config=MetaVoiceFirstStageConfig(**spec["first"]),
        second_stage_config=MetaVoiceSecondStageConfig(**spec["second"]),
        speaker_encoder_config=MetaVoiceSpeakerEncoderConfig(**spec["speaker"]),
        codec_config=codec,
    )
    torch.manual_seed(0)
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = MetaVoiceForTextToSpeech(config).eval()
    finally:
        torch.set_default_dtype(default)
    model.codec.float()  # the codec stays float32 (tiny share of the time, numerically sensitive)
    return model


def mode_kwargs(mode: str, device: torch.device) -> dict:
    if mode == "eager":
        return {"disable_compile": True}
    kwargs = {"cache_implementation": "static"}
    if mode == "compiled":
        compile_config = CompileConfig(fullgraph=True, mode="reduce-overhead" if device.type == "cuda" else None)
        compile_config._compile_all_devices = True
        kwargs["compile_config"] = compile_config
    else:
        kwargs["disable_compile"] = True
    return kwargs


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_mb(device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(model, batch: int, tokens: int, prompt_len: int, mode: str, device, repeats: int) -> dict:
    fs = model.config.first_stage_config
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(fs.text_offset, fs.end_of_text_token_id, (batch, prompt_len), generator=generator)
    ids[:, -1] = fs.end_of_text_token_id
    ids = ids.to(device)
    speakers = torch.nn.functional.normalize(torch.randn(batch, fs.speaker_embedding_dim), dim=-1).to(device)
    kwargs = dict(
        speaker_embeds=speakers.to(model.dtype),
        guidance_scale=(3.0, 1.0),
        max_new_tokens=tokens,
        min_new_tokens=tokens,
        do_sample=True,
        top_p=0.95,
        **mode_kwargs(mode, device),
    )
    with torch.no_grad():
        model.first_stage.generate(ids, **kwargs)  # warm-up (compiles)
        best = None
        for _ in range(repeats):
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            sync(device)
            start = time.perf_counter()
            sequences = model.first_stage.generate(ids, **kwargs)
            sync(device)
            first = time.perf_counter() - start
            # rest of the chain on the same frames: second stage + EnCodec
            frames = tokens // 2
            start = time.perf_counter()
            new = sequences[:, prompt_len : prompt_len + 2 * frames]
            c0, c1 = new[:, 0::2] % fs.codebook_size, new[:, 1::2] % fs.codebook_size
            ss = model.config.second_stage_config
            rows = torch.full((batch, 2, ss.block_size), ss.pad_token_id, device=device)
            n = min(frames, ss.block_size - prompt_len - 1)
            rows[:, 0, prompt_len : prompt_len + n] = c0[:, :n]
            rows[:, 1, prompt_len : prompt_len + n] = c1[:, :n]
            fine = model._second_stage_generate(rows, speakers.to(model.dtype), True, 1.0, 200)
            codes = [
                torch.cat([c0[b : b + 1, :n], c1[b : b + 1, :n], fine[b, :, prompt_len : prompt_len + n]])
                for b in range(batch)
            ]
            model.decode_audio_codes(codes)
            sync(device)
            rest = time.perf_counter() - start
            if best is None or first + rest < best[0] + best[1]:
                best = (first, rest, peak_mb(device))
    first, rest, memory = best
    audio_s = tokens / 2 / FRAME_RATE
    return {
        "batch": batch,
        "mode": mode,
        "tokens": tokens,
        "tok/s/seq": tokens / first,
        "tok/s total": batch * tokens / first,
        "RTF 1st": first / (batch * audio_s),
        "RTF e2e": (first + rest) / (batch * audio_s),
        "peak MB": memory,
    }


def format_table(rows: list[dict]) -> str:
    headers = list(rows[0])
    cells = [[f"{v:.3g}" if isinstance(v, float) else str(v) for v in row.values()] for row in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    line = lambda values: "| " + " | ".join(v.rjust(w) for v, w in zip(values, widths)) + " |"
    return "\n".join([line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, cells)])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--device", default=None)
    parser.add_argument("--dtype", default=None, help="float32 | bfloat16 | float16 (default: bf16 on GPU)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--modes", nargs="+", choices=MODES, default=["eager", "static"])
    parser.add_argument("--tokens", type=int, default=256, help="first-stage tokens per sequence (2 per frame)")
    parser.add_argument("--prompt-len", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="CPU intra-op threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = getattr(torch, args.dtype) if args.dtype else (torch.bfloat16 if device.type == "cuda" else torch.float32)
    model = build(args.size, device, dtype)
    rows = [
        run(model, batch, args.tokens, args.prompt_len, mode, device, args.repeats)
        for batch in args.batch_sizes
        for mode in args.modes
    ]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"MetaVoice {args.size}, {dtype}, {name}, prompt {args.prompt_len}, guidance (3, 1), top-p 0.95")
    print(format_table(rows))


if __name__ == "__main__":
    main()
