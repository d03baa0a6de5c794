"""Convert an original MOSS-TTS-Local 1.0 checkpoint folder into a codectts ``codectts_local`` folder.

Key mapping (original → ours); every tensor is copied unchanged (same dtype):

    model.embedding_list.{c}.weight              → model.embed_tokens.{c}.weight
    model.language_model.<rest>                  → model.language_model.<rest>
    model.language_model.embed_tokens.weight     → dropped (stored by the original, never used by it)
    local_transformer.<rest>                     → local_transformer.<rest>
    speech_embedding_to_local_mlp.<rest>         → local_input_adapter.<rest>
    local_to_speech_embedding_mlps.{c}.<rest>    → local_output_adapters.{c}.<rest>
    layer_norm_before_lm_heads.{c}.weight        → head_norms.{c}.weight
    lm_heads.{c}.weight                          → lm_heads.{c}.weight

Public API: :func:`write_converted_local` (folder → folder, used by ``codectts convert``),
:func:`convert_local_state_dict` and :func:`load_original_local` (in memory).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from ...configuration.moss.local import CodecTTSLocalConfig
from ..io import (
    DEFAULT_MAX_SHARD_BYTES,
    PrefixRenames,
    check_state_dict,
    load_state_dict,
    read_json,
    write_converted_model,
)

_UNUSED_ORIGINAL_KEYS = ("model.language_model.embed_tokens.weight",)
_PREFIX_MAP = (  # (original prefix, our prefix); first match wins
    ("model.embedding_list.", "model.embed_tokens."),
    ("model.language_model.", "model.language_model."),
    ("local_transformer.", "local_transformer."),
    ("speech_embedding_to_local_mlp.", "local_input_adapter."),
    ("local_to_speech_embedding_mlps.", "local_output_adapters."),
    ("layer_norm_before_lm_heads.", "head_norms."),
    ("lm_heads.", "lm_heads."),
)


_RENAMES = PrefixRenames(_PREFIX_MAP, _UNUSED_ORIGINAL_KEYS, "MOSS-TTS-Local")
original_key_to_ours = _RENAMES.to_ours
_our_key_to_original = _RENAMES.to_original


def expected_original_shapes(config: CodecTTSLocalConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor an original checkpoint for ``config`` must hold, with its shape."""
    from ...modeling.moss.local import CodecTTSLocalForConditionalGeneration

    with torch.device("meta"):
        model = CodecTTSLocalForConditionalGeneration(config)
    shapes = {_our_key_to_original(k): tuple(v.shape) for k, v in model.state_dict().items()}
    shapes["model.language_model.embed_tokens.weight"] = (config.vocab_size, config.hidden_size)
    return shapes


def convert_local_state_dict(
    state: Mapping[str, torch.Tensor], config: CodecTTSLocalConfig
) -> dict[str, torch.Tensor]:
    """Validate an original state dict against ``config`` and rename it to our layout (tensors are not copied)."""
    check_state_dict(state, expected_original_shapes(config), "MOSS-TTS-Local 1.0 checkpoint")
    converted = {}
    for key, tensor in state.items():
        new_key = original_key_to_ours(key)
        if new_key is not None:
            converted[new_key] = tensor
    return converted


def load_original_local(src: str | Path, **config_overrides):
    """Build a :class:`CodecTTSLocalForConditionalGeneration` directly from an original folder (no files written)."""
    from ...modeling.moss.local import CodecTTSLocalForConditionalGeneration

    src = Path(src)
    config = CodecTTSLocalConfig.from_original_config(read_json(src / "config.json"), **config_overrides)
    weights = convert_local_state_dict(load_state_dict(src), config)
    with torch.device("meta"):
        model = CodecTTSLocalForConditionalGeneration(config)
    model.load_state_dict(weights, strict=True, assign=True)
    # Non-persistent buffers (the backbone's rotary frequencies) were created on "meta": rebuild them.
    rotary = model.model.language_model.rotary_emb
    model.model.language_model.rotary_emb = type(rotary)(config=config.text_config)
    return model.eval()


def write_converted_local(src: Path, out: Path, max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES) -> None:
    """Write our format of the original Local 1.0 folder ``src`` into the existing empty folder ``out``.

    Writes ``config.json``, ``generation_config.json`` and safetensors weights (sharded with an index above
    ``max_shard_bytes``). Raises :class:`CheckpointMismatchError` naming missing, unexpected or mis-shaped tensors.
    """
    from ...modeling.moss.generation_local import CodecTTSLocalGenerationMixin

    src = Path(src)
    config = CodecTTSLocalConfig.from_original_config(read_json(src / "config.json"))
    weights = convert_local_state_dict(load_state_dict(src), config)
    generation_config = CodecTTSLocalGenerationMixin.default_generation_config(config)
    write_converted_model(
        out, config, weights, "CodecTTSLocalForConditionalGeneration", generation_config, max_shard_bytes
    )


__all__ = [
    "convert_local_state_dict",
    "expected_original_shapes",
    "load_original_local",
    "original_key_to_ours",
    "write_converted_local",
]
