"""MaskGCT speed: seconds of compute per second of generated audio (RTF) for T2S, S2A (1-layer + full) and the
acoustic codec decoder, at batch 1 and 8, with the conditional / unconditional CFG passes batched (default) or run
separately (as the original does).

Weights are random (speed does not depend on them). ``--size tiny`` (default) runs small models on CPU;
``--size official`` builds the released sizes (T2S 1536x16, S2A 1024x16, Vocos 512x30; ~1.6 B parameters) for a GPU
run with the official step plan (T2S 25 steps, S2A [25, 10, 1 x 10], cfg 2.5 / 0.75).

    python benchmarks/maskgct.py --threads 1
    python benchmarks/maskgct.py --size official --device cuda --dtype bfloat16 --seconds 10
"""

from __future__ import annotations

import argparse
import time

import torch

from codectts.configuration.maskgct import MaskGctAcousticCodecConfig, MaskGctS2AConfig, MaskGctT2SConfig
from codectts.modeling.maskgct import MaskGctAcousticCodecModel, MaskGctS2AModel, MaskGctT2SModel

SIZES = {
    "tiny": dict(
        t2s=dict(hidden_size=64, num_layers=2, num_heads=4, cond_codebook_size=512),
        s2a=dict(hidden_size=64, num_layers=2, num_heads=4, codebook_size=128, cond_codebook_size=512),
        codec=dict(
            encoder_dim=8,
            num_quantizers=12,
            codebook_size=128,
            vocos_dim=64,
            vocos_intermediate_dim=128,
            vocos_num_layers=2,
        ),
    ),
    "official": dict(t2s={}, s2a={}, codec={}),
}


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device, repeats):
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def build(cls, config, device, dtype):
    torch.manual_seed(0)
    with torch.device(device):
        return cls(config).to(dtype).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--device", default=None)
    parser.add_argument("--dtype", default=None)
    parser.add_argument("--seconds", type=float, default=10.0, help="generated speech per utterance")
    parser.add_argument("--prompt-seconds", type=float, default=3.0)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--t2s-steps", type=int, default=25)
    parser.add_argument("--s2a-steps", type=int, nargs="+", default=None)
    parser.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"])
    parser.add_argument(
        "--compile", action="store_true", help="torch.compile(fullgraph=True) the estimators (static shapes per layer)"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = getattr(torch, args.dtype) if args.dtype else (torch.bfloat16 if device.type == "cuda" else torch.float32)
    size = SIZES[args.size]
    t2s_cfg = MaskGctT2SConfig(**size["t2s"])
    s2a1_cfg = MaskGctS2AConfig(**size["s2a"], num_quantizer=1, predict_layer_1=True)
    codec_cfg = MaskGctAcousticCodecConfig(**size["codec"])
    s2af_cfg = MaskGctS2AConfig(**size["s2a"], num_quantizer=codec_cfg.num_quantizers, predict_layer_1=False)
    for cfg in (t2s_cfg, s2a1_cfg, s2af_cfg):
        cfg._attn_implementation = args.attn
    t2s = build(MaskGctT2SModel, t2s_cfg, device, dtype)
    s2a1 = build(MaskGctS2AModel, s2a1_cfg, device, dtype)
    s2af = build(MaskGctS2AModel, s2af_cfg, device, dtype)
    codec = build(MaskGctAcousticCodecModel, codec_cfg, device, dtype)
    if args.compile:
        mode = "reduce-overhead" if device.type == "cuda" else None
        for model in (t2s, s2a1, s2af):
            model.diff_estimator.forward = torch.compile(model.diff_estimator.forward, fullgraph=True, mode=mode)
    q = codec_cfg.num_quantizers
    s2a_steps = args.s2a_steps or ([25, 10] + [1] * q)[:q]
    n, p = int(args.seconds * 50), int(args.prompt_seconds * 50)
    phones = int((args.seconds + args.prompt_seconds) * 15)  # ~15 phones per second of speech
    print(
        f"MaskGCT {args.size} on {device} ({dtype}, attn {args.attn}); {args.seconds:g} s generated per utterance "
        f"after a {args.prompt_seconds:g} s prompt; T2S {args.t2s_steps} steps, S2A {s2a_steps}, cfg 2.5/0.75"
        f"{', compiled estimators' if args.compile else ''}"
    )
    print("| stage | batch | CFG passes | seconds | RTF (s compute / s audio) |")
    print("|---|---|---|---|---|")
    gen = torch.Generator(device=device)
    for batch in args.batch:
        audio_seconds = batch * n / 50
        prompt = torch.randint(0, t2s_cfg.cond_codebook_size, (batch, p), device=device)
        phone_ids = torch.randint(0, 363, (batch, phones), device=device)
        semantic = torch.randint(0, s2a1_cfg.cond_codebook_size, (batch, p + n), device=device)
        prompt_codes = torch.randint(0, codec_cfg.codebook_size, (batch, p, q), device=device)
        codes = torch.randint(0, codec_cfg.codebook_size, (batch, n, q), device=device)
        total = {}
        for batched in (True, False):
            label = "1 batched" if batched else "2 separate"
            kw = dict(cfg=2.5, rescale_cfg=0.75, cfg_batching=batched, generator=gen.manual_seed(0))
            t = timed(
                lambda kw=kw: t2s.generate(
                    prompt_ids=prompt, phone_ids=phone_ids, target_len=n, n_timesteps=args.t2s_steps, **kw
                ),
                device,
                args.repeats,
            )

            def s2a(kw=kw):
                layer0 = s2a1.generate(
                    semantic_ids=semantic, prompt_codes=prompt_codes, n_timesteps=s2a_steps[:1], **kw
                )
                s2af.generate(
                    semantic_ids=semantic, prompt_codes=prompt_codes, n_timesteps=s2a_steps, gt_codes=layer0, **kw
                )

            s = timed(s2a, device, args.repeats)
            total[label] = t + s
            print(f"| T2S | {batch} | {label} | {t:.3f} | {t / audio_seconds:.4f} |")
            print(f"| S2A (1-layer + full) | {batch} | {label} | {s:.3f} | {s / audio_seconds:.4f} |")
        with torch.no_grad():
            c = timed(lambda: codec.decode(audio_codes=codes), device, args.repeats)
        print(f"| codec decode | {batch} | - | {c:.3f} | {c / audio_seconds:.4f} |")
        for label, value in total.items():
            print(
                f"| **all** (T2S + S2A + decode) | {batch} | {label} | {value + c:.3f} | "
                f"{(value + c) / audio_seconds:.4f} |"
            )


if __name__ == "__main__":
    main()
