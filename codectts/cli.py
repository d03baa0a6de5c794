"""The ``codectts`` command line: ``convert``, ``codec`` (encode/decode WAV files), ``synthesize``, ``realtime``,
``demo``, ``export``, ``finetune``.

Each sub-command imports what it needs lazily so that ``codectts --help`` is instant.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path


def _cmd_convert(args: argparse.Namespace) -> int:
    if args.export:
        from .conversion.export import convert_and_export

        dst = convert_and_export(
            args.src, args.dst, tokenizer=args.tokenizer, audio_tokenizer=args.audio_tokenizer,
            overwrite=args.overwrite, **_export_options(args),
        )
        print(f"converted and exported {args.src} -> {dst} (Hub-ready, loads with trust_remote_code=True)")
        return 0
    from .conversion import convert_checkpoint

    dst = convert_checkpoint(
        args.src, args.dst, tokenizer=args.tokenizer, audio_tokenizer=args.audio_tokenizer, overwrite=args.overwrite,
        codec=args.codec,
        config=args.config, semantic_model=args.semantic_model, semantic_stats=args.semantic_stats,
    )
    print(f"converted {args.src} -> {dst}")
    return 0


def _export_options(args: argparse.Namespace) -> dict:
    return dict(
        push_to_hub=args.push_to_hub, private=args.private, create_pr=args.create_pr, repo_id=args.repo_id,
        base_model=args.base_model,
    )


def _cmd_export(args: argparse.Namespace) -> int:
    if args.format == "original":
        return _export_original(args)
    if args.original_code is not None:
        raise ValueError("--original-code only applies to --format original")
    from .conversion.export import export_folder

    dst = export_folder(args.src, args.dst, overwrite=args.overwrite, **_export_options(args))
    pushed = f" and pushed to {args.push_to_hub}" if args.push_to_hub else ""
    print(f"exported {args.src} -> {dst}{pushed} (loads with trust_remote_code=True)")
    return 0


def _export_original(args: argparse.Namespace) -> int:
    from .conversion.moss.original_export import export_original

    hub_only = [flag for flag, value in (("--push-to-hub", args.push_to_hub), ("--create-pr", args.create_pr),
                                         ("--private", args.private), ("--repo-id", args.repo_id),
                                         ("--base-model", args.base_model)) if value]
    if hub_only:
        raise ValueError(f"{', '.join(hub_only)} only apply to --format hub")
    dst = export_original(args.src, args.dst, overwrite=args.overwrite, original_code=args.original_code)
    print(f"exported {args.src} -> {dst} in the official MOSS layout (original config, tensor names and shards)")
    return 0


def _add_export_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--push-to-hub", metavar="REPO", help="upload the exported folder to this Hub repository")
    p.add_argument("--private", action="store_true", help="create the Hub repository as private")
    p.add_argument("--create-pr", action="store_true", help="upload as a pull request")
    p.add_argument("--repo-id", help="repository id used in the model card snippet (default: --push-to-hub)")
    p.add_argument("--base-model", help="base_model for the model card metadata (e.g. the original repo id)")


def _load_codec(path: Path):
    from .modeling.moss.audio_tokenizer import CodecTTSAudioTokenizerModel

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


class _ProgressStreamer:
    """A generate() streamer that advances a progress bar by one per generated row (80 ms of audio)."""

    def __init__(self, total: int):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, unit="row", desc="generating", disable=None)
        self.prompt_seen = False

    def put(self, value) -> None:
        if self.prompt_seen:
            self.bar.update(1)
        self.prompt_seen = True

    def end(self) -> None:
        self.bar.close()


def _cmd_synthesize(args: argparse.Namespace) -> int:
    import torch
    from transformers import AutoModel, AutoProcessor

    if not args.text.strip():
        raise ValueError("the text to synthesise is empty")
    if args.tokens is not None and args.tokens < 1:
        raise ValueError(f"--tokens must be a positive number of frames, got {args.tokens}")
    if args.max_new_tokens < 1:
        raise ValueError(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    if args.seed is not None:
        torch.manual_seed(args.seed)
    model = AutoModel.from_pretrained(args.model).eval()
    processor = AutoProcessor.from_pretrained(args.model)
    reference = [str(path) for path in args.reference] or None
    message = processor.build_user_message(
        text=args.text, reference=reference, instruction=args.instruction, tokens=args.tokens, language=args.language
    )
    inputs = processor([[message]], mode="generation")
    generate_kwargs = {"max_new_tokens": args.max_new_tokens, "return_dict_in_generate": True}
    if args.greedy:
        generate_kwargs["do_sample"] = False
    with torch.inference_mode():
        generated = model.generate(**inputs, streamer=_ProgressStreamer(args.max_new_tokens), **generate_kwargs)
    speech = processor.decode_generation(generated.sequences, input_ids=inputs["input_ids"])[0]
    if not speech.audio:
        raise ValueError("the model produced no audio (try another --seed or a larger --max-new-tokens)")
    path = processor.save_audio(speech, args.out)
    seconds = speech.waveform.numel() / processor.sampling_rate
    print(f"wrote {seconds:.2f} s of audio ({len(speech.audio)} segment(s)) to {path}")
    return 0


def _cmd_finetune(args: argparse.Namespace) -> int:
    from .finetune import finetune

    method = f"LoRA rank {args.lora_rank}" if args.lora_rank else "all weights"
    print(f"fine-tuning {args.model} on {args.data} ({method}); the audio is encoded once, then training starts")
    summary = finetune(
        args.model, args.data, args.out, lora_rank=args.lora_rank, lora_alpha=args.lora_alpha, epochs=args.epochs,
        learning_rate=args.learning_rate, batch_size=args.batch_size,
        gradient_accumulation_steps=args.gradient_accumulation_steps, codec=args.codec, eval_data=args.eval_data,
        gradient_checkpointing=args.gradient_checkpointing, bf16=args.bf16, fp16=args.fp16, seed=args.seed,
        save_steps=args.save_steps,
        resume=args.resume, keep_checkpoints=args.keep_checkpoints, overwrite=args.overwrite,
    )  # fmt: skip
    print(summary.to_text())
    return 0


def _cmd_realtime(args: argparse.Namespace) -> int:
    from .processing.moss.realtime_cli import run_realtime

    run_realtime(
        args.model, args.output, greedy=args.greedy, max_frames=args.max_frames, seed=args.seed,
        chunk_frames=args.chunk_frames, voice_codes=args.voice_codes,
    )
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(args.out, args.text, seed=args.seed, max_new_tokens=args.max_new_tokens)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="codectts", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("convert", help="convert an original MOSS or MaskGCT checkpoint folder to codectts format")
    p.add_argument("src", type=Path, help="original checkpoint folder (config.json + safetensors)")
    p.add_argument("dst", type=Path, help="output folder (written completely or not at all)")
    p.add_argument("--tokenizer", type=Path, help="text tokenizer folder to bundle (generators only)")
    p.add_argument("--audio-tokenizer", type=Path, help="codec folder to bundle (original or converted)")
    p.add_argument("--codec", type=Path, help="MetaVoice-1B only: EnCodec 24 kHz folder to bundle (waveform output)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty destination")
    # MaskGCT (folder in the official amphion/MaskGCT layout)
    p.add_argument("--config", type=Path, help="MaskGCT: the original maskgct.json (default: official values)")
    p.add_argument("--semantic-model", help="MaskGCT: w2v-bert-2.0 folder (default: facebook/w2v-bert-2.0)")
    p.add_argument("--semantic-stats", type=Path, help="MaskGCT: wav2vec2bert_stats.pt or .safetensors (mean/var)")
    p.add_argument("--export", action="store_true", help="write a Hub-ready folder (flattened code, model card)")
    _add_export_arguments(p)
    p.set_defaults(func=_cmd_convert)

    p = sub.add_parser(
        "export",
        help="turn a converted folder into a Hub-ready trust_remote_code folder, or back into the official layout",
    )
    p.add_argument("src", type=Path, help="a codectts folder (converted model or bundle)")
    p.add_argument("dst", type=Path, help="output folder (written completely or not at all)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty destination")
    p.add_argument(
        "--format", choices=["hub", "original"], default="hub",
        help="hub: codectts remote code + model card (default); original: the official MOSS layout (original "
        "config, tensor names, sharded safetensors) that the original code, vLLM-Omni and SGLang-Omni load",
    )
    p.add_argument(
        "--original-code", type=Path, metavar="RELEASE_DIR",
        help="with --format original: copy the remote code (*.py), processor_config.json and tokenizer files of this "
        "original release snapshot next to the weights (what trust_remote_code loaders and the engines read)",
    )
    _add_export_arguments(p)
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("codec", help="encode audio to codes, decode codes to audio, or round-trip a file")
    p.add_argument("action", choices=["encode", "decode", "roundtrip"])
    p.add_argument("input", type=Path, help="audio file (encode/roundtrip) or codes .safetensors (decode)")
    p.add_argument("output", type=Path, help="codes .safetensors (encode) or audio file (decode/roundtrip)")
    p.add_argument("--model", type=Path, required=True, help="converted audio tokenizer folder")
    p.add_argument("--num-quantizers", type=int, default=None, help="quantizers to use (default: all)")
    p.add_argument("--subtype", default=None, help="soundfile subtype of the output, e.g. PCM_16 or FLOAT")
    p.set_defaults(func=_cmd_codec)

    p = sub.add_parser("synthesize", help="text (+ optional reference voice) to a WAV file with a converted model")
    p.add_argument("text", help="text to speak")
    p.add_argument("--model", type=Path, required=True, help="converted model bundle (model + tokenizer + codec)")
    p.add_argument("--out", type=Path, required=True, help="output audio file (.wav, .flac, .ogg)")
    p.add_argument("--reference", type=Path, action="append", default=[], help="reference voice (repeat: speakers)")
    p.add_argument("--tokens", type=int, help="desired duration in frames (12.5 per second)")
    p.add_argument("--instruction", help="voice description (voice design models)")
    p.add_argument("--language", help="language name, e.g. English or Chinese")
    p.add_argument("--seed", type=int, help="random seed for sampling")
    p.add_argument("--greedy", action="store_true", help="greedy decoding instead of the model's sampling preset")
    p.add_argument("--max-new-tokens", type=int, default=4096, help="generation budget in rows (80 ms each)")
    p.set_defaults(func=_cmd_synthesize)

    p = sub.add_parser(
        "finetune",
        help="fine-tune a converted Delay/Local bundle on records.jsonl with transformers.Trainer (optionally LoRA)",
        description="Fine-tune a converted Delay/Local bundle. Each line of --data is a JSON record {\"text\": ..., "
        "\"audio\": \"clip.wav\" (or \"codes\": [[...]]), optional \"reference\", \"language\", \"instruction\", "
        "...}; audio paths are relative to the file. The audio is encoded once; --out receives a complete bundle "
        "(merged model, tokenizer, codec) that `codectts export --format original` turns into the official layout.",
    )
    p.add_argument("--model", type=Path, required=True, help="converted bundle (model + tokenizer [+ audio_tokenizer/])")
    p.add_argument("--data", type=Path, required=True, help="training records, one JSON object per line")
    p.add_argument("--out", type=Path, required=True, help="output bundle folder (written completely at the end)")
    p.add_argument("--lora-rank", type=int, help="train LoRA adapters of this rank (merged into --out) instead of all weights")
    p.add_argument("--lora-alpha", type=float, help="LoRA alpha (default 2 x rank)")
    p.add_argument("--epochs", type=float, default=3.0, help="passes over the data (default 3)")
    p.add_argument("--learning-rate", type=float, help="peak learning rate (default 2e-4 with LoRA, 2e-5 without)")
    p.add_argument("--batch-size", type=int, default=1, help="utterances per device batch (default 1)")
    p.add_argument("--gradient-accumulation-steps", type=int, default=1)
    p.add_argument("--codec", type=Path, help="codec folder for encoding the audio (default: the bundle's)")
    p.add_argument("--eval-data", type=Path, help="held-out records; eval_loss after every epoch")
    p.add_argument("--gradient-checkpointing", action="store_true", help="recompute activations (less memory)")
    p.add_argument("--bf16", action="store_true", help="bfloat16 mixed precision (GPU)")
    p.add_argument("--fp16", action="store_true", help="float16 mixed precision (GPU)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save-steps", type=int, help="checkpoint every N steps (default: every epoch) in OUT.checkpoints/")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in OUT.checkpoints/")
    p.add_argument("--keep-checkpoints", action="store_true", help="keep OUT.checkpoints/ after success")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    p.set_defaults(func=_cmd_finetune)

    p = sub.add_parser("realtime", help="MOSS-TTS-Realtime: speak text piped in on stdin, line by line, as it arrives")
    p.add_argument("--model", type=Path, required=True, help="converted Realtime bundle (model + tokenizer + codec)")
    p.add_argument("--output", type=Path, default=Path("realtime.wav"), help="output WAV file")
    p.add_argument("--voice-codes", type=Path, help="voice prompt: .safetensors with 'audio_codes' [T, 16]")
    p.add_argument("--greedy", action="store_true", help="greedy decoding instead of the recommended sampling")
    p.add_argument("--max-frames", type=int, default=None, help="frame budget of the reply (80 ms each)")
    p.add_argument("--chunk-frames", type=int, default=1, help="frames per codec decode call")
    p.add_argument("--seed", type=int, help="random seed for sampling")
    p.set_defaults(func=_cmd_realtime)

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
