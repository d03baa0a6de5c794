"""The ``codectts`` command line: ``convert``, ``codec`` (encode/decode WAV files), ``synthesize``, ``demo``, ``export``.

Each sub-command imports what it needs lazily so that ``codectts --help`` is instant.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path


def _cmd_convert(args: argparse.Namespace) -> int:
    from .conversion import convert_checkpoint

    dst = convert_checkpoint(
        args.src, args.dst, tokenizer=args.tokenizer, audio_tokenizer=args.audio_tokenizer, overwrite=args.overwrite
    )
    print(f"converted {args.src} -> {dst}")
    return 0


def _load_codec(path: Path):
    from .modeling.audio_tokenizer import CodecTTSAudioTokenizerModel

    return CodecTTSAudioTokenizerModel.from_pretrained(path).eval()


def _encode_file(codec, wav_path: Path, num_quantizers: int | None):
    import torch

    from .processing.audio_io import prepare_waveform

    wav = prepare_waveform(wav_path, codec.config.sampling_rate, what="input audio")
    with torch.inference_mode():
        out = codec.encode(torch.from_numpy(wav)[None], num_quantizers=num_quantizers)
    return out.audio_codes[0, :, : int(out.audio_codes_lengths[0])], len(wav)


def _decode_codes(codec, codes, num_samples: int | None = None):
    import torch

    with torch.inference_mode():
        audio = codec.decode(codes[None]).audio_values[0, 0]
    return audio if num_samples is None else audio[:num_samples]


def _cmd_codec(args: argparse.Namespace) -> int:
    """Encode a WAV file to codes, decode codes to a WAV file, or do both (round trip)."""
    from safetensors.torch import load_file, save_file

    from .processing.audio_io import save_audio

    codec = _load_codec(args.model)
    rate = codec.config.sampling_rate
    if args.action == "decode":
        codes = load_file(str(args.input))["audio_codes"]
        save_audio(_decode_codes(codec, codes), args.output, rate, subtype=args.subtype)
        print(f"decoded {tuple(codes.shape)} codes -> {args.output}")
        return 0
    codes, num_samples = _encode_file(codec, args.input, args.num_quantizers)
    if args.action == "encode":
        tmp = args.output.with_name(f".{args.output.name}.tmp")
        save_file({"audio_codes": codes.contiguous()}, str(tmp), metadata={"sampling_rate": str(rate)})
        tmp.replace(args.output)
        print(f"encoded {args.input} -> {tuple(codes.shape)} codes (quantizers x frames) -> {args.output}")
    else:
        save_audio(_decode_codes(codec, codes, num_samples), args.output, rate, subtype=args.subtype)
        kbps = codes.shape[0] * math.log2(codec.config.codebook_size) * codec.config.frame_rate / 1000
        print(f"{args.input} -> {codes.shape[1]} frames x {codes.shape[0]} codes ({kbps:.3g} kbps) -> {args.output}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(args.out, args.text, seed=args.seed, max_new_tokens=args.max_new_tokens)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="codectts", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("convert", help="convert an original MOSS checkpoint folder to codectts format")
    p.add_argument("src", type=Path, help="original checkpoint folder (config.json + safetensors)")
    p.add_argument("dst", type=Path, help="output folder (written completely or not at all)")
    p.add_argument("--tokenizer", type=Path, help="text tokenizer folder to bundle (generators only)")
    p.add_argument("--audio-tokenizer", type=Path, help="codec folder to bundle (original or converted)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty destination")
    p.set_defaults(func=_cmd_convert)

    p = sub.add_parser("codec", help="encode audio to codes, decode codes to audio, or round-trip a file")
    p.add_argument("action", choices=["encode", "decode", "roundtrip"])
    p.add_argument("input", type=Path, help="audio file (encode/roundtrip) or codes .safetensors (decode)")
    p.add_argument("output", type=Path, help="codes .safetensors (encode) or audio file (decode/roundtrip)")
    p.add_argument("--model", type=Path, required=True, help="converted audio tokenizer folder")
    p.add_argument("--num-quantizers", type=int, default=None, help="quantizers to use (default: all)")
    p.add_argument("--subtype", default=None, help="soundfile subtype of the output, e.g. PCM_16 or FLOAT")
    p.set_defaults(func=_cmd_codec)

    p = sub.add_parser("demo", help="offline end-to-end demo with tiny random-weight models (no download)")
    p.add_argument("--out", type=Path, default=Path("demo_out"), help="folder for the WAV files")
    p.add_argument("--text", default="Hello from codectts, a tiny offline demo.", help="text to synthesise")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-new-tokens", type=int, default=80, help="generation budget in rows (80 ms each)")
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        print(f"codectts {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
