"""Complete a converted generator folder into a TTS bundle that ``AutoProcessor`` loads.

Bundle layout (everything ``AutoModel`` / ``AutoProcessor.from_pretrained(folder)`` needs after ``import codectts``)::

    folder/
        config.json, model*.safetensors   the Delay or Local generator (already converted)
        tokenizer.json, tokenizer_config.json, chat_template.jinja, ...   the text tokenizer
        processor_config.json             CodecTTSProcessor settings (layout, n_vq, token ids, ...)
        audio_tokenizer/                  the codec in codectts format (converted here when given in the original layout)
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..io import read_json

AUDIO_TOKENIZER_SUBFOLDER = "audio_tokenizer"
GENERATOR_MODEL_TYPES = ("codectts_delay", "codectts_local")
CODEC_MODEL_TYPE = "codectts_audio_tokenizer"


def _copy_converted_codec(src: Path, dst: Path) -> None:
    """Copy a codectts codec folder (config + weights, sharded or not)."""
    names = ["config.json", "model.safetensors.index.json", *(p.name for p in sorted(src.glob("*.safetensors")))]
    copied = 0
    for name in names:
        if (src / name).is_file():
            shutil.copy2(src / name, dst / name)
            copied += name.endswith(".safetensors")
    if not copied:
        raise FileNotFoundError(f"no safetensors weights in the audio tokenizer folder {src}")


def _write_codec(audio_tokenizer: Path, dst: Path) -> dict:
    """Place the codec in ``dst`` (converted from the original layout if needed); returns its codectts config."""
    from ...conversion import detect_checkpoint_kind

    config_file = audio_tokenizer / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{audio_tokenizer} has no config.json (expected an audio tokenizer folder)")
    config = read_json(config_file)
    dst.mkdir(parents=True, exist_ok=False)
    if config.get("model_type") == CODEC_MODEL_TYPE:
        _copy_converted_codec(audio_tokenizer, dst)
    else:
        kind = detect_checkpoint_kind(config)
        if kind != "audio_tokenizer":
            raise ValueError(f"{audio_tokenizer} holds a {kind} checkpoint, not an audio tokenizer")
        from .audio_tokenizer import write_converted_audio_tokenizer

        write_converted_audio_tokenizer(audio_tokenizer, dst)
    return read_json(dst / "config.json")


def _check_compatible(model_config, codec_config: dict) -> None:
    """The codec must produce what the generator consumes: same rate, enough quantizers, same codebook size."""
    problems = []
    if int(codec_config.get("sampling_rate", model_config.sampling_rate)) != int(model_config.sampling_rate):
        problems.append(f"sampling rate {codec_config['sampling_rate']} vs the model's {model_config.sampling_rate}")
    if int(codec_config.get("num_quantizers", model_config.n_vq)) < int(model_config.n_vq):
        problems.append(f"{codec_config['num_quantizers']} quantizers but the model uses n_vq={model_config.n_vq}")
    codebook = codec_config.get("codebook_size")
    audio_vocab = getattr(model_config, "audio_vocab_size", model_config.audio_pad_code)
    if codebook is not None and int(codebook) != int(audio_vocab):
        problems.append(f"codebook size {codebook} vs the model's audio vocabulary {audio_vocab}")
    if problems:
        raise ValueError("the audio tokenizer does not match the generator: " + "; ".join(problems))


def write_tts_bundle(
    out: str | os.PathLike,
    tokenizer: str | os.PathLike | None = None,
    audio_tokenizer: str | os.PathLike | None = None,
) -> None:
    """Add tokenizer, codec and processor config to the converted generator folder ``out``.

    Args:
        out: folder holding a converted Delay/Local model (``config.json`` with ``model_type`` ``codectts_delay`` or
            ``codectts_local``).
        tokenizer: text tokenizer folder (with its chat template). ``None``: use tokenizer files already in ``out``.
        audio_tokenizer: codec folder, in the original MOSS-Audio-Tokenizer layout (converted here) or already
            converted (copied). ``None``: the processor works on text and codes only until a codec is attached.
    """
    from transformers import AutoConfig, AutoTokenizer

    import codectts  # noqa: F401  (registers the Auto classes)

    from ...processing.moss.processor import CodecTTSProcessor

    out = Path(out)
    model_config_dict = read_json(out / "config.json")
    if model_config_dict.get("model_type") not in GENERATOR_MODEL_TYPES:
        raise ValueError(
            f"{out} must hold a converted generator (model_type one of {GENERATOR_MODEL_TYPES}), "
            f"found {model_config_dict.get('model_type')!r}"
        )
    model_config = AutoConfig.from_pretrained(out)

    tokenizer_dir = Path(tokenizer) if tokenizer is not None else out
    if not any((tokenizer_dir / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json", "vocab.json")):
        raise FileNotFoundError(
            f"no tokenizer files in {tokenizer_dir}: pass the text tokenizer folder (tokenizer=...)"
        )
    text_tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    if not getattr(text_tokenizer, "chat_template", None):
        raise ValueError(f"the tokenizer in {tokenizer_dir} has no chat template (chat_template.jinja)")
    vocab_size = getattr(model_config, "vocab_size", None) or model_config.get_text_config().vocab_size
    if len(text_tokenizer) > int(vocab_size):
        raise ValueError(
            f"the tokenizer has {len(text_tokenizer)} tokens but the model's text vocabulary is {vocab_size}"
        )

    if audio_tokenizer is not None:
        codec_config = _write_codec(Path(audio_tokenizer), out / AUDIO_TOKENIZER_SUBFOLDER)
        _check_compatible(model_config, codec_config)

    # The processor only needs the codec at run time (from the subfolder); build it without loading the weights.
    processor = CodecTTSProcessor.from_model_config(model_config, text_tokenizer)
    processor.save_pretrained(out, save_audio_tokenizer=False)


__all__ = ["write_tts_bundle"]
