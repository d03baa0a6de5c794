"""Converters from the official checkpoint layouts to codectts folders.

``convert_checkpoint(src, dst)`` detects what ``src`` holds (MOSS-Audio-Tokenizer, MOSS-TTS Delay or MOSS-TTS-Local
from its ``config.json``; MaskGCT from its official sub-folders) and writes a folder that
``AutoModel.from_pretrained`` loads after ``import codectts``.
With ``tokenizer`` and ``audio_tokenizer`` a generator folder is completed into a bundle that
``AutoProcessor.from_pretrained`` loads as well. The destination is written completely or not at all; the source
is only read.
"""

from __future__ import annotations

import os
from pathlib import Path

from .io import CheckpointMismatchError, atomic_output_dir, read_json, same_folder

KINDS = ("audio_tokenizer", "delay", "local", "realtime")


def detect_checkpoint_kind(config: dict) -> str:
    """Tell which original model family a ``config.json`` dict describes.

    The codec config carries ``encoder_kwargs``/``decoder_kwargs``. Delay and Local 1.0 both say
    ``model_type: moss_tts_delay``; Local is recognised by its ``local_*`` fields.
    """
    model_type = config.get("model_type", "")
    if isinstance(model_type, str) and model_type.startswith("codectts"):
        raise ValueError(f"this folder is already in codectts format (model_type {model_type!r}); nothing to convert")
    if "encoder_kwargs" in config and "decoder_kwargs" in config:
        return "audio_tokenizer"
    if model_type == "moss_tts_realtime":
        return "realtime"
    if "language_config" in config:
        if any(k in config for k in ("local_num_layers", "local_hidden_size", "local_ffn_hidden_size")):
            return "local"
        return "delay"
    raise ValueError(
        "unrecognised checkpoint: expected a MOSS-Audio-Tokenizer config (encoder_kwargs/decoder_kwargs) or a "
        f"MOSS-TTS config (language_config); got model_type={model_type!r} with keys {sorted(config)[:20]}"
    )


def _writer(kind: str):
    if kind == "audio_tokenizer":
        from .moss.audio_tokenizer import write_converted_audio_tokenizer as write
    elif kind == "delay":
        from .moss.delay import write_converted_delay as write
    elif kind == "local":
        from .moss.local import write_converted_local as write
    elif kind == "realtime":
        from .moss.realtime import write_converted_realtime as write
    else:  # pragma: no cover - guarded by detect_checkpoint_kind
        raise ValueError(kind)
    return write


def convert_checkpoint(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    tokenizer: str | os.PathLike | None = None,
    audio_tokenizer: str | os.PathLike | None = None,
    overwrite: bool = False,
    codec: str | os.PathLike | None = None,
    config: str | os.PathLike | None = None,
    semantic_model: str | os.PathLike | None = None,
    semantic_stats: str | os.PathLike | None = None,
) -> Path:
    """Convert the original checkpoint folder ``src`` into a codectts folder ``dst``; returns ``dst``.

    Args:
        src: original checkpoint folder (``config.json`` + safetensors, possibly sharded).
        dst: output folder; must not exist or be empty unless ``overwrite``.
        tokenizer: text tokenizer folder to bundle with a generator (Delay/Local only).
        audio_tokenizer: codec folder (original or already converted) to bundle with a generator.
        overwrite: replace an existing non-empty ``dst`` once the new folder is complete.
        codec: EnCodec 24 kHz folder to bundle with a MetaVoice-1B checkpoint (``first_stage.pt`` etc., no
            ``config.json``; see `codectts.conversion.metavoice`).
        config, semantic_model, semantic_stats: MaskGCT only (a folder in the official ``amphion/MaskGCT`` layout,
            recognised by its sub-folders): the original ``maskgct.json``, the w2v-bert-2.0 folder and the feature
            statistics (see `codectts.conversion.maskgct`).
    """
    src, dst = Path(src), Path(dst)
    from .metavoice import convert_metavoice, is_metavoice_folder

    # detected by its checkpoint files: the Hub repo's config.json is only a stub (all configuration is in the .pt)
    if is_metavoice_folder(src):
        if tokenizer or audio_tokenizer:
            raise ValueError("MetaVoice folders carry their own tokenizer; bundle EnCodec with --codec instead")
        return convert_metavoice(src, dst, codec=codec, overwrite=overwrite)
    if codec is not None:
        raise ValueError("--codec only applies to MetaVoice-1B checkpoint folders (first_stage.pt, ...)")
    from .maskgct import is_maskgct_folder

    maskgct_options = {"config": config, "semantic_model": semantic_model, "semantic_stats": semantic_stats}
    if is_maskgct_folder(src):
        if tokenizer or audio_tokenizer:
            raise ValueError("--tokenizer/--audio-tokenizer do not apply to MaskGCT (its codecs are part of it)")
        if dst.exists() and same_folder(src, dst):
            raise ValueError("the destination must differ from the source folder (the source is never modified)")
        from .maskgct import write_converted_maskgct

        with atomic_output_dir(dst, overwrite=overwrite) as out:
            write_converted_maskgct(src, out, **maskgct_options)
        return dst
    if any(v is not None for v in maskgct_options.values()):
        raise ValueError("--config/--semantic-model/--semantic-stats only apply to MaskGCT checkpoint folders")
    if not (src / "config.json").is_file():
        raise FileNotFoundError(f"{src} has no config.json")
    if dst.exists() and same_folder(src, dst):
        raise ValueError("the destination must differ from the source folder (the source is never modified)")
    original = read_json(src / "config.json")
    kind = detect_checkpoint_kind(original)
    if kind == "audio_tokenizer" and (tokenizer or audio_tokenizer):
        raise ValueError("--tokenizer/--audio-tokenizer only apply to generator checkpoints (Delay/Local/Realtime)")
    with atomic_output_dir(dst, overwrite=overwrite) as out:
        _writer(kind)(src, out)
        # fields the converted config does not model (auto_map, version, ...) for `export --format original`
        from .moss.original_export import record_original_extra_fields

        record_original_extra_fields(kind, original, out)
        if kind == "realtime":
            from .moss.realtime import write_realtime_bundle

            if tokenizer is not None or audio_tokenizer is not None:
                write_realtime_bundle(out, tokenizer=tokenizer, audio_tokenizer=audio_tokenizer)
        elif tokenizer is not None or audio_tokenizer is not None:
            from .moss.assemble import write_tts_bundle

            write_tts_bundle(out, tokenizer=tokenizer, audio_tokenizer=audio_tokenizer)
    return dst


__all__ = ["CheckpointMismatchError", "KINDS", "convert_checkpoint", "detect_checkpoint_kind"]
