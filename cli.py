"""The ``codectts`` command line: ``convert``, ``codec`` (encode/decode WAV files), ``synthesize``, ``demo``, ``export``.

Each sub-command imports what it needs lazily so that ``codectts --help`` is instant.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _cmd_convert(args: argparse.Namespace) -> int:
    from .conversion import convert_checkpoint

    dst = convert_checkpoint(
        args.src, args.dst, tokenizer=args.tokenizer, audio_tokenizer=args.audio_tokenizer, overwrite=args.overwrite
    )
    print(f"converted {args.src} -> {dst}")
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
