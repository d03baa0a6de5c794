"""The codectts command line: convert, export, codec (encode/decode audio files), synthesize, realtime,
finetune, demo.

Arguments are parsed before anything heavy is imported, so that ``codectts --help`` and argument errors are instant;
every sub-command validates its inputs and outputs before loading a model, and reports errors in one line with a
non-zero exit status (``--debug`` shows the traceback).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import signal
import sys
from pathlib import Path

from . import __version__

DESCRIPTION = (
    "codectts: codec-token text-to-speech for Hugging Face transformers. Convert the official MOSS checkpoints, "
    "export them for the Hub, encode/decode audio with the codec and synthesise speech."
)

# exit statuses: 2 = the user's input was refused (as argparse does), 1 = an unexpected failure, 130 = interrupted
EXIT_USAGE, EXIT_FAILURE, EXIT_INTERRUPTED = 2, 1, 130
USER_ERRORS = (ValueError, TypeError, OSError, ImportError, LookupError)


class CLIError(ValueError):
    """A command-line argument was refused (the message names the option and the fix)."""


def _register_auto_classes() -> None:
    from . import register_auto_classes

    register_auto_classes()


# ---------------------------------------------------------------------------------------------------------------------
# checks of files and folders given on the command line (before any model is loaded)
# ---------------------------------------------------------------------------------------------------------------------


def _model_folder(path: Path, option: str, expect: str | None = None) -> Path:
    """A converted model folder: it exists, has a config.json holding an object; with ``expect`` ("codec" or
    "tts") the folder must hold that kind of model."""
    if not path.exists():
        raise CLIError(f"{option} {path}: no such folder (give a folder written by `codectts convert`)")
    if not path.is_dir():
        raise CLIError(f"{option} {path}: not a folder (give a folder written by `codectts convert`)")
    if not (path / "config.json").is_file():
        raise CLIError(f"{option} {path}: no config.json in it (give a folder written by `codectts convert`)")
    from .conversion.io import read_json

    model_type = read_json(path / "config.json").get("model_type")
    if expect == "codec" and model_type != "codectts_audio_tokenizer":
        hint = (
            f"; this is a TTS bundle, its codec is in {path / 'audio_tokenizer'}"
            if (path / "audio_tokenizer" / "config.json").is_file()
            else ""
        )
        raise CLIError(f"{option} {path}: expected an audio tokenizer (codec) folder, found model_type {model_type!r}"
                       f"{hint}")
    if expect == "tts" and model_type not in ("codectts_delay", "codectts_local"):
        raise CLIError(
            f"{option} {path}: expected a TTS model bundle (Delay or Local, converted with --tokenizer and "
            f"--audio-tokenizer), found model_type {model_type!r}"
        )
    return path


def _input_file(path: Path, option: str) -> Path:
    if not path.exists():
        raise CLIError(f"{option} {path}: no such file")
    if not path.is_file():
        raise CLIError(f"{option} {path}: not a file")
    return path


def _output_file(path: Path, overwrite: bool, suffixes: tuple[str, ...] | None = None) -> Path:
    if suffixes is not None and path.suffix.lower() not in suffixes:
        raise CLIError(f"output {path}: expected a {' or '.join(suffixes)} file")
    if path.is_dir():
        raise CLIError(f"output {path} is a folder; give a file name")
    if path.exists() and not overwrite:
        raise CLIError(f"output {path} exists; pass --overwrite to replace it")
    return path


def _audio_output(path: Path, overwrite: bool, subtype: str | None = None) -> Path:
    from .processing.audio_io import check_audio_output_path

    return check_audio_output_path(path, overwrite=overwrite, subtype=subtype)


def _positive(name: str):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"{name} must be >= 1, got {value}")
        return value

    return parse


# ---------------------------------------------------------------------------------------------------------------------
# convert / export
# ---------------------------------------------------------------------------------------------------------------------


def _cmd_convert(args: argparse.Namespace) -> int:
    if args.export:
        from .conversion.export import convert_and_export

        _register_auto_classes()
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

    _model_folder(args.src, "src")
    _register_auto_classes()
    dst = export_folder(args.src, args.dst, overwrite=args.overwrite, **_export_options(args))
    pushed = f" and pushed to {args.push_to_hub}" if args.push_to_hub else ""
    print(f"exported {args.src} -> {dst}{pushed} (loads with trust_remote_code=True)")
    return 0


def _export_original(args: argparse.Namespace) -> int:
    from .conversion.moss.original_export import export_original

    _register_auto_classes()

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


# ---------------------------------------------------------------------------------------------------------------------
# codec
# ---------------------------------------------------------------------------------------------------------------------

CODES_KEY = "audio_codes"
# How `codec encode` stores codes: [num_quantizers, frames]; written in the file's metadata so that `codec decode`
# never has to guess the orientation.
CODES_LAYOUT = "quantizers,frames"


def _load_codec(path: Path, device: str = "cpu"):
    from .modeling import CodecTTSAudioTokenizerModel

    return CodecTTSAudioTokenizerModel.from_pretrained(path).to(device).eval()


def _encode_file(codec, wav_path: Path, num_quantizers: int | None):
    import torch

    from .processing.audio_io import prepare_waveform

    wav = prepare_waveform(wav_path, codec.config.sampling_rate, what="input audio")
    device = next(codec.parameters()).device
    with torch.inference_mode():
        out = codec.encode(torch.from_numpy(wav)[None].to(device), num_quantizers=num_quantizers)
    return out.audio_codes[0, :, : int(out.audio_codes_lengths[0])].cpu(), len(wav)


def _decode_codes(codec, codes, num_samples: int | None = None):
    import torch

    device = next(codec.parameters()).device
    with torch.inference_mode():
        audio = codec.decode(codes[None].to(device)).audio_values[0, 0].float().cpu()
    return audio if num_samples is None else audio[:num_samples]


def _read_codes(path: Path, layout: str, num_quantizers: int):
    """Codes ``[num_quantizers, frames]`` from a .safetensors file (see ``--codes-layout``)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            if CODES_KEY not in f.keys():
                raise CLIError(f"{path} has no {CODES_KEY!r} tensor (found {sorted(f.keys())})")
            codes = f.get_tensor(CODES_KEY)
            stored_layout = (f.metadata() or {}).get("layout")
    except SafetensorError as error:
        raise CLIError(f"{path} is not a readable .safetensors file: {error}") from None
    if codes.dim() != 2:
        raise CLIError(f"{path}: {CODES_KEY} must be 2-D [num_quantizers, frames], got shape {tuple(codes.shape)}")
    if layout == "auto":
        if stored_layout is not None:
            layout = "frames-quantizers" if stored_layout == "frames,quantizers" else "quantizers-frames"
        elif codes.shape[0] > num_quantizers >= codes.shape[1]:
            raise CLIError(
                f"{path}: codes of shape {tuple(codes.shape)} look like [frames, quantizers] (the codec has "
                f"{num_quantizers} quantizers); pass --codes-layout frames-quantizers"
            )
        elif codes.shape[0] <= num_quantizers and codes.shape[1] <= num_quantizers and codes.shape[0] != codes.shape[1]:
            raise CLIError(
                f"{path}: cannot tell whether codes of shape {tuple(codes.shape)} are [quantizers, frames] or "
                "[frames, quantizers] (no layout in the file's metadata); pass --codes-layout"
            )
        else:
            layout = "quantizers-frames"
    return codes.T.contiguous() if layout == "frames-quantizers" else codes


def _cmd_codec(args: argparse.Namespace) -> int:
    """Encode an audio file to codes, decode codes to an audio file, or do both (round trip)."""
    _model_folder(args.model, "--model", expect="codec")
    _input_file(args.input, "input")
    if args.action != "decode":
        from .processing.audio_io import load_audio_file

        load_audio_file(args.input)  # unreadable or empty: refused before loading the codec
    if args.action == "encode":
        _output_file(args.output, args.overwrite, suffixes=(".safetensors",))
    else:
        _audio_output(args.output, args.overwrite, args.subtype)
    device = _device(args.device)

    from safetensors.torch import save_file

    from .processing.audio_io import save_audio

    codec = _load_codec(args.model, device)
    rate = codec.config.sampling_rate
    if args.num_quantizers is not None and args.num_quantizers > codec.config.num_quantizers:
        raise CLIError(f"--num-quantizers must be <= {codec.config.num_quantizers} for this codec")
    if args.action == "decode":
        codes = _read_codes(args.input, args.codes_layout, codec.config.num_quantizers)
        save_audio(_decode_codes(codec, codes), args.output, rate, subtype=args.subtype)
        print(f"decoded {tuple(codes.shape)} codes (quantizers x frames) -> {args.output}")
        return 0
    codes, num_samples = _encode_file(codec, args.input, args.num_quantizers)
    if args.action == "encode":
        tmp = args.output.with_name(f".{args.output.name}.tmp")
        metadata = {"sampling_rate": str(rate), "layout": CODES_LAYOUT}
        try:
            save_file({CODES_KEY: codes.contiguous()}, str(tmp), metadata=metadata)
            tmp.replace(args.output)
        finally:
            tmp.unlink(missing_ok=True)
        print(f"encoded {args.input} -> {tuple(codes.shape)} codes (quantizers x frames) -> {args.output}")
    else:
        save_audio(_decode_codes(codec, codes, num_samples), args.output, rate, subtype=args.subtype)
        kbps = codes.shape[0] * math.log2(codec.config.codebook_size) * codec.config.frame_rate / 1000
        print(f"{args.input} -> {codes.shape[1]} frames x {codes.shape[0]} codes ({kbps:.3g} kbps) -> {args.output}")
    return 0


# ---------------------------------------------------------------------------------------------------------------------
# synthesize
# ---------------------------------------------------------------------------------------------------------------------


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


DTYPES = ("auto", "float32", "bfloat16", "float16")


def _device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise CLIError(f"--device {name!r} is not a device name (e.g. cpu, cuda, cuda:1, mps): {error}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CLIError(f"--device {name}: CUDA is not available on this machine (use --device cpu)")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise CLIError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise CLIError(f"--device {name}: MPS is not available on this machine")
    return str(device)


def _dtype(name: str, device: str):
    import torch

    if name == "auto":  # half precision where it is fast, full precision on CPU
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    return getattr(torch, name)


def _cmd_synthesize(args: argparse.Namespace) -> int:
    from .processing.moss.messages import check_user_text_fields

    check_user_text_fields(text=args.text, instruction=args.instruction, language=args.language)
    _model_folder(args.model, "--model", expect="tts")
    from .processing.audio_io import load_audio_file

    for path in args.reference:
        load_audio_file(_input_file(path, "--reference"))  # unreadable or empty: refused before loading the model
    _audio_output(args.out, args.overwrite)
    device = _device(args.device)
    dtype = _dtype(args.dtype, device)

    import torch
    from transformers import AutoModel, AutoProcessor

    _register_auto_classes()
    if args.seed is not None:
        torch.manual_seed(args.seed)
    model = AutoModel.from_pretrained(args.model, dtype=dtype).to(device).eval()
    processor = AutoProcessor.from_pretrained(args.model)
    reference = [str(path) for path in args.reference] or None
    message = processor.build_user_message(
        text=args.text, reference=reference, instruction=args.instruction, tokens=args.tokens, language=args.language
    )
    inputs = processor([[message]], mode="generation").to(device)
    generate_kwargs = {"max_new_tokens": args.max_new_tokens, "return_dict_in_generate": True}
    if args.greedy:
        generate_kwargs["do_sample"] = False
    with torch.inference_mode():
        generated = model.generate(**inputs, streamer=_ProgressStreamer(args.max_new_tokens), **generate_kwargs)
    speech = processor.decode_generation(generated.sequences, input_ids=inputs["input_ids"])[0]
    if not speech.audio:
        raise CLIError("the model produced no audio (try another --seed or a larger --max-new-tokens)")
    path = processor.save_audio(speech, args.out)
    seconds = speech.waveform.numel() / processor.sampling_rate
    print(f"wrote {seconds:.2f} s of audio ({len(speech.audio)} segment(s)) to {path}")
    return 0


def _cmd_finetune(args: argparse.Namespace) -> int:
    from .finetune import finetune

    _register_auto_classes()

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
    _model_folder(args.model, "--model")
    _audio_output(args.output, overwrite=True)
    if args.voice_codes is not None:
        _input_file(args.voice_codes, "--voice-codes")
    _register_auto_classes()
    from .processing.moss.realtime_cli import run_realtime

    run_realtime(
        args.model, args.output, greedy=args.greedy, max_frames=args.max_frames, seed=args.seed,
        chunk_frames=args.chunk_frames, voice_codes=args.voice_codes,
    )
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .processing.moss.messages import check_user_text_fields

    check_user_text_fields(text=args.text)
    if args.out.exists() and not args.out.is_dir():
        raise CLIError(f"--out {args.out} exists and is not a folder")
    from .demo import run_demo

    run_demo(args.out, args.text, seed=args.seed, max_new_tokens=args.max_new_tokens)
    return 0


# ---------------------------------------------------------------------------------------------------------------------
# parser and entry point
# ---------------------------------------------------------------------------------------------------------------------


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except where there is none."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or action.default == []:
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="codectts", description=DESCRIPTION, formatter_class=_HelpFormatter)
    parser.add_argument("--version", action="version", version=f"codectts {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str, description: str | None = None) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=description or help, formatter_class=_HelpFormatter)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show the full traceback of an error")
        return p

    p = command("convert", "convert an original MOSS, MetaVoice or MaskGCT checkpoint folder to codectts format")
    p.add_argument("src", type=Path, help="original checkpoint folder (config.json + safetensors); only read")
    p.add_argument("dst", type=Path, help="output folder (written completely or not at all, outside src)")
    p.add_argument("--tokenizer", type=Path, help="text tokenizer folder to bundle (generators only)")
    p.add_argument("--audio-tokenizer", type=Path, help="codec folder to bundle (original or converted)")
    p.add_argument("--codec", type=Path, help="MetaVoice-1B only: EnCodec 24 kHz folder to bundle (waveform output)")
    p.add_argument("--overwrite", action="store_true", help="replace a destination that codectts wrote before")
    # MaskGCT (folder in the official amphion/MaskGCT layout)
    p.add_argument("--config", type=Path, help="MaskGCT: the original maskgct.json (default: official values)")
    p.add_argument("--semantic-model", help="MaskGCT: w2v-bert-2.0 folder (default: facebook/w2v-bert-2.0)")
    p.add_argument("--semantic-stats", type=Path, help="MaskGCT: wav2vec2bert_stats.pt or .safetensors (mean/var)")
    p.add_argument("--export", action="store_true", help="write a Hub-ready folder (flattened code, model card)")
    _add_export_arguments(p)
    p.set_defaults(func=_cmd_convert)

    p = command("export", "turn a converted folder into a Hub-ready trust_remote_code folder, or back into the official "
                "layout")
    p.add_argument("src", type=Path, help="a codectts folder (converted model or bundle); only read")
    p.add_argument("dst", type=Path, help="output folder (written completely or not at all, outside src)")
    p.add_argument("--overwrite", action="store_true", help="replace a destination that codectts wrote before")
    p.add_argument(
        "--format", choices=["hub", "original"], default="hub",
        help="hub: codectts remote code + model card; original: the official MOSS layout (original config, tensor "
        "names, sharded safetensors) that the original code, vLLM-Omni and SGLang-Omni load",
    )
    p.add_argument(
        "--original-code", type=Path, metavar="RELEASE_DIR",
        help="with --format original: copy the remote code (*.py), processor_config.json and tokenizer files of this "
        "original release snapshot next to the weights (what trust_remote_code loaders and the engines read)",
    )
    _add_export_arguments(p)
    p.set_defaults(func=_cmd_export)

    p = command("codec", "encode audio to codes, decode codes to audio, or round-trip a file")
    p.add_argument("action", choices=["encode", "decode", "roundtrip"])
    p.add_argument("input", type=Path, help="audio file (encode/roundtrip) or codes .safetensors (decode)")
    p.add_argument("output", type=Path, help="codes .safetensors (encode) or audio file (decode/roundtrip)")
    p.add_argument("--model", type=Path, required=True, help="converted audio tokenizer (codec) folder")
    p.add_argument("--num-quantizers", type=_positive("--num-quantizers"), default=None,
                   help="quantizers to use (default: all)")
    p.add_argument("--subtype", default=None, help="soundfile subtype of the output, e.g. PCM_16 or FLOAT")
    p.add_argument("--codes-layout", choices=["auto", "quantizers-frames", "frames-quantizers"], default="auto",
                   help="decode: orientation of the stored codes (auto: the file's metadata, as encode writes it)")
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1, mps or auto")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.set_defaults(func=_cmd_codec)

    p = command("synthesize", "text (+ optional reference voice) to an audio file with a converted model bundle")
    p.add_argument("text", help="text to speak")
    p.add_argument("--model", type=Path, required=True, help="converted model bundle (model + tokenizer + codec)")
    p.add_argument("--out", type=Path, required=True, help="output audio file (.wav, .flac, .ogg)")
    p.add_argument("--reference", type=Path, action="append", default=[], help="reference voice (repeat: speakers)")
    p.add_argument("--tokens", type=_positive("--tokens"), help="desired duration in frames (12.5 per second)")
    p.add_argument("--instruction", help="voice description (voice design models)")
    p.add_argument("--language", help="language name, e.g. English or Chinese")
    p.add_argument("--seed", type=int, help="random seed for sampling")
    p.add_argument("--greedy", action="store_true", help="greedy decoding instead of the model's sampling preset")
    p.add_argument("--max-new-tokens", type=_positive("--max-new-tokens"), default=4096,
                   help="generation budget in rows of 80 ms (4096 rows = 5.5 minutes)")
    p.add_argument("--device", default="auto", help="torch device: cpu, cuda, cuda:1, mps or auto (cuda if available)")
    p.add_argument("--dtype", choices=DTYPES, default="auto",
                   help="weights' dtype (auto: bfloat16/float16 on CUDA, float32 otherwise)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.set_defaults(func=_cmd_synthesize)

    p = command(
        "finetune",
        "fine-tune a converted Delay/Local bundle on records.jsonl with transformers.Trainer (optionally LoRA)",
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

    p = command("realtime", "MOSS-TTS-Realtime: speak text piped in on stdin, line by line, as it arrives")
    p.add_argument("--model", type=Path, required=True, help="converted Realtime bundle (model + tokenizer + codec)")
    p.add_argument("--output", type=Path, default=Path("realtime.wav"), help="output WAV file")
    p.add_argument("--voice-codes", type=Path, help="voice prompt: .safetensors with 'audio_codes' [T, 16]")
    p.add_argument("--greedy", action="store_true", help="greedy decoding instead of the recommended sampling")
    p.add_argument("--max-frames", type=_positive("--max-frames"), default=None,
                   help="frame budget of the reply (80 ms each)")
    p.add_argument("--chunk-frames", type=_positive("--chunk-frames"), default=1,
                   help="frames per codec decode call")
    p.add_argument("--seed", type=int, help="random seed for sampling")
    p.set_defaults(func=_cmd_realtime)

    p = command("demo", "offline end-to-end demo with tiny random-weight models (no download)")
    p.add_argument("--out", type=Path, default=Path("demo_out"), help="folder for the audio files")
    p.add_argument("--text", default="Hello from codectts, a tiny offline demo.", help="text to synthesise")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--max-new-tokens", type=_positive("--max-new-tokens"), default=80,
                   help="generation budget in rows of 80 ms")
    p.set_defaults(func=_cmd_demo)
    return parser


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    if isinstance(error, KeyError) and text.startswith("'"):
        text = text.strip("'")
    return text or type(error).__name__


@contextlib.contextmanager
def _terminate_as_exit():
    """SIGTERM raises SystemExit, so that cleanup (temporary output folders) runs as for Ctrl-C."""

    def handler(signum, frame):
        raise SystemExit(128 + signum)

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # --help, --version, or an argument error argparse already reported
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    prefix = f"codectts {args.command}: error:"
    try:
        with _terminate_as_exit():
            return args.func(args)
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(f"codectts {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except USER_ERRORS as error:
        if args.debug:
            raise
        print(f"{prefix} {_one_line(error)}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as error:  # a failure we did not foresee: still one line, traceback with --debug
        if args.debug:
            raise
        print(f"{prefix} {type(error).__name__}: {_one_line(error)} (run with --debug for the traceback)",
              file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
