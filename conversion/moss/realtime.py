"""Convert an original MOSS-TTS-Realtime checkpoint (``model_type: moss_tts_realtime``) into a codectts folder.

Key mapping (original → ours); tensors are copied unchanged except the padding rows (below):

    embed_tokens.{c}.weight                         → model.embed_tokens.{c}.weight
    language_model.<rest>                           → model.language_model.<rest>
    language_model.embed_tokens.weight              → dropped (stored by the original, never used)
    local_transformer.model.<rest>                  → local_transformer.<rest>
    local_transformer.local_lm_heads.{k}.weight     → lm_heads.{k}.weight

Padding rows (spec Q21): the original's ``from_pretrained`` zeroes the padding rows of the 17 backbone embeddings
after loading (text row ``language_config.pad_token_id``, audio rows 1024), whatever the checkpoint stores; the local
transformer's code embeddings keep their stored row 1024. The converter writes those 17 rows as zeros, so the
converted model behaves as the original runtime does.

Public API: :func:`write_converted_realtime` (folder → folder, used by ``codectts convert``),
:func:`convert_realtime_state_dict`, :func:`load_original_realtime` (in memory) and :func:`write_realtime_bundle`
(tokenizer + optional codec + processor config).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch

from ...configuration.moss.realtime import CodecTTSRealtimeConfig
from ..io import (
    DEFAULT_MAX_SHARD_BYTES,
    PrefixRenames,
    check_state_dict,
    load_state_dict,
    read_json,
    write_converted_model,
)

__all__ = [
    "REALTIME_MODEL_TYPE",
    "convert_realtime_state_dict",
    "expected_original_shapes",
    "load_original_realtime",
    "original_key_to_ours",
    "write_converted_realtime",
    "write_realtime_bundle",
]

REALTIME_MODEL_TYPE = "codectts_moss_tts_realtime"
_UNUSED_ORIGINAL_KEYS = ("language_model.embed_tokens.weight",)
_PREFIX_MAP = (  # (original prefix, our prefix); first match wins
    ("embed_tokens.", "model.embed_tokens."),
    ("language_model.", "model.language_model."),
    ("local_transformer.model.", "local_transformer."),
    ("local_transformer.local_lm_heads.", "lm_heads."),
)


_RENAMES = PrefixRenames(_PREFIX_MAP, _UNUSED_ORIGINAL_KEYS, "MOSS-TTS-Realtime")
original_key_to_ours = _RENAMES.to_ours
_our_key_to_original = _RENAMES.to_original


def expected_original_shapes(config: CodecTTSRealtimeConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor an original checkpoint for ``config`` must hold, with its shape."""
    from ...modeling.moss.realtime import CodecTTSRealtimeForConditionalGeneration

    with torch.device("meta"):
        model = CodecTTSRealtimeForConditionalGeneration(config)
    shapes = {_our_key_to_original(k): tuple(v.shape) for k, v in model.state_dict().items()}
    shapes["language_model.embed_tokens.weight"] = (config.vocab_size, config.hidden_size)
    return shapes


def convert_realtime_state_dict(
    state: Mapping[str, torch.Tensor], config: CodecTTSRealtimeConfig
) -> dict[str, torch.Tensor]:
    """Validate an original state dict against ``config``, rename it, and zero the backbone padding rows."""
    check_state_dict(state, expected_original_shapes(config), "MOSS-TTS-Realtime checkpoint")
    converted = {}
    for key, tensor in state.items():
        new_key = original_key_to_ours(key)
        if new_key is not None:
            converted[new_key] = tensor
    padding = {"model.embed_tokens.0.weight": config.text_padding_idx}
    padding.update({f"model.embed_tokens.{c}.weight": config.audio_pad_code for c in range(1, config.num_channels)})
    for key, row in padding.items():
        if row is None:
            continue
        weight = converted[key].clone()
        weight[row] = 0
        converted[key] = weight
    return converted


def load_original_realtime(src: str | os.PathLike, **config_overrides):
    """Build a :class:`CodecTTSRealtimeForConditionalGeneration` directly from an original folder (no files)."""
    from ...modeling.moss.realtime import CodecTTSRealtimeForConditionalGeneration

    src = Path(src)
    config = CodecTTSRealtimeConfig.from_original_config(read_json(src / "config.json"), **config_overrides)
    weights = convert_realtime_state_dict(load_state_dict(src), config)
    with torch.device("meta"):
        model = CodecTTSRealtimeForConditionalGeneration(config)
    model.load_state_dict(weights, strict=True, assign=True)
    rotary = model.model.language_model.rotary_emb  # non-persistent buffers were created on "meta"
    model.model.language_model.rotary_emb = type(rotary)(config=config.text_config)
    return model.eval()


def write_converted_realtime(src: Path, out: Path, max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES) -> None:
    """Write our format of the original Realtime folder ``src`` into the existing empty folder ``out``."""
    src = Path(src)
    config = CodecTTSRealtimeConfig.from_original_config(read_json(src / "config.json"))
    weights = convert_realtime_state_dict(load_state_dict(src), config)
    write_converted_model(out, config, weights, "CodecTTSRealtimeForConditionalGeneration", None, max_shard_bytes)


def write_realtime_bundle(
    out: str | os.PathLike, tokenizer: str | os.PathLike | None = None, audio_tokenizer: str | os.PathLike | None = None
) -> None:
    """Add the text tokenizer, the codec (optional, ``audio_tokenizer/``) and the processor config to a converted
    Realtime folder ``out``, so that ``AutoProcessor.from_pretrained(out)`` works."""
    from transformers import AutoConfig, AutoTokenizer

    import codectts  # noqa: F401  (registers the Auto classes)

    from ...processing.moss.realtime import CodecTTSRealtimeProcessor
    from .assemble import AUDIO_TOKENIZER_SUBFOLDER, _write_codec

    out = Path(out)
    if read_json(out / "config.json").get("model_type") != REALTIME_MODEL_TYPE:
        raise ValueError(f"{out} must hold a converted MOSS-TTS-Realtime model (model_type {REALTIME_MODEL_TYPE!r})")
    model_config = AutoConfig.from_pretrained(out)
    tokenizer_dir = Path(tokenizer) if tokenizer is not None else out
    if not any((tokenizer_dir / n).is_file() for n in ("tokenizer.json", "tokenizer_config.json", "vocab.json")):
        raise FileNotFoundError(f"no tokenizer files in {tokenizer_dir}: pass the text tokenizer folder (tokenizer=...)")
    text_tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    if len(text_tokenizer) > model_config.vocab_size:
        raise ValueError(
            f"the tokenizer has {len(text_tokenizer)} tokens but the model's text vocabulary is {model_config.vocab_size}"
        )
    for name, token in (("text_pad_token_id", "<|text_pad|>"), ("audio_placeholder_token_id", "<|audio_pad|>")):
        found = text_tokenizer.convert_tokens_to_ids(token)
        if found != getattr(model_config, name):
            raise ValueError(
                f"the tokenizer maps {token} to {found}, the model expects {getattr(model_config, name)} ({name})"
            )
    if audio_tokenizer is not None:
        codec_config = _write_codec(Path(audio_tokenizer), out / AUDIO_TOKENIZER_SUBFOLDER)
        problems = []
        if int(codec_config.get("sampling_rate", model_config.sampling_rate)) != model_config.sampling_rate:
            problems.append(f"sampling rate {codec_config['sampling_rate']} vs {model_config.sampling_rate}")
        if int(codec_config.get("num_quantizers", model_config.n_vq)) < model_config.n_vq:
            problems.append(f"{codec_config['num_quantizers']} quantizers, the model needs {model_config.n_vq}")
        if int(codec_config.get("codebook_size", model_config.codebook_size)) != model_config.codebook_size:
            problems.append(f"codebook size {codec_config['codebook_size']} vs {model_config.codebook_size}")
        if problems:
            raise ValueError("the audio tokenizer does not match the Realtime model: " + "; ".join(problems))
    processor = CodecTTSRealtimeProcessor.from_model_config(model_config, text_tokenizer)
    processor.save_pretrained(out, save_audio_tokenizer=False)
