"""Export codectts folders back to the official MOSS layouts (``codectts export SRC DST --format original``).

The serving engines (vLLM-Omni, SGLang-Omni) and the original remote code load checkpoints in the layout the
OpenMOSS releases use. This module writes exactly that layout from one of our folders, so a model converted (or
fine-tuned) here goes back to them without friction:

* MOSS-TTS Delay (``codectts_delay``): ``model_type: moss_tts_delay``, ``language_config``, tensors
  ``language_model.*``, ``emb_ext.{j}``, ``lm_heads.{k}`` (the inverse of :mod:`codectts.conversion.delay`);
* MOSS-TTS-Local 1.0 (``codectts_local``): ``model_type: moss_tts_delay`` with the ``local_*`` fields, tensors
  ``model.embedding_list.{c}``, ``model.language_model.*``, ``local_transformer.*``, ``speech_embedding_to_local_mlp``,
  ``local_to_speech_embedding_mlps.{c}``, ``layer_norm_before_lm_heads.{c}``, ``lm_heads.{c}``;
* MOSS-Audio-Tokenizer (``codectts_audio_tokenizer``): ``model_type: moss-audio-tokenizer``, ``encoder_kwargs`` /
  ``decoder_kwargs`` / ``quantizer_kwargs``, tensors ``encoder.{i}.transformer.layers.{l}.*`` ..., and the quantizer's
  1x1 convolutions as weight-norm pairs ``parametrizations.weight.original0/1`` (g, v).

Exactness. Tensors are read from the safetensors files as stored (no model is built, no dtype change), renamed and
re-split; they are bit-identical to what the original converter consumed. Two things cannot come back bit for bit:

* weight-norm pairs: the converter folds ``(g, v)`` into ``W = g * v / ||v||``; the export writes ``v = W`` and
  ``g = ||W||`` (the norm PyTorch's weight-norm kernel computes), so the *effective* weight the original evaluates is
  ``W`` again (bit-exact on CPU, float rounding elsewhere) — the original ``(g, v)`` split is not recoverable;
* Local's ``model.language_model.embed_tokens.weight``, a tensor the original stores but never reads (its inputs are the
  summed ``model.embedding_list`` embeddings). The converter drops it; the export writes a copy of the text embedding
  actually used (``model.embedding_list.0``) so that every loader finds the key.

What cannot be represented is refused with a :class:`OriginalLayoutError` naming the field: e.g. a PEFT adapter folder
(merge it first), a text head tied to the input embedding, a Local head-norm epsilon other than the hard-coded 1e-6, a
codec LayerNorm epsilon other than 1e-5.

Bundles (a generator folder with tokenizer files and an ``audio_tokenizer/`` subfolder) are exported whole: the
generator at the root, the tokenizer files copied, and the codec in its own original layout in ``audio_tokenizer/``.
Weights are sharded safetensors with ``model.safetensors.index.json`` above ``max_shard_bytes`` (the releases' layout).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import transformers

from ..io import (
    DEFAULT_MAX_SHARD_BYTES,
    CheckpointMismatchError,
    atomic_output_dir,
    load_state_dict,
    read_json,
    same_folder,
    save_sharded_safetensors,
)

__all__ = [
    "OriginalLayoutError",
    "export_original",
    "original_audio_tokenizer_config",
    "original_audio_tokenizer_state_dict",
    "original_delay_config",
    "original_delay_state_dict",
    "original_local_config",
    "original_local_state_dict",
    "record_original_extra_fields",
    "unfold_weight_norm",
]

AUDIO_TOKENIZER_SUBFOLDER = "audio_tokenizer"
# Tokenizer files of a bundle that the original processor reads as they are.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.jinja",
    "vocab.json",
    "merges.txt",
)
_WN = "parametrizations.weight.original"
# Our configs keep the fields of an original config.json that they do not model (``auto_map``, the codec's
# ``version``, MOSS-VoiceGenerator's ``gen_token_id`` ...) under this key; the export writes them back.
EXTRA_FIELDS_KEY = "original_extra_fields"


class OriginalLayoutError(ValueError):
    """The folder holds something the official layout cannot represent (the message says what and how to fix it)."""


def _json_number(value: float) -> int | float:
    """``10000.0`` -> ``10000``: the original configs store integral values as JSON integers."""
    return int(value) if float(value).is_integer() else value


# ---------------------------------------------------------------------------------------------------------------------
# Delay and Local generators
# ---------------------------------------------------------------------------------------------------------------------

# PretrainedConfig bookkeeping that `to_dict` adds to a sub-config; dropped when it only holds the base default (the
# original `language_config` entries are what Qwen3Config.save_pretrained wrote under transformers 5.0).
_BASE_CONFIG_DEFAULTS: dict[str, Any] = {
    "_name_or_path": "",
    "architectures": None,
    "chunk_size_feed_forward": 0,
    "dtype": None,
    "id2label": {"0": "LABEL_0", "1": "LABEL_1"},
    "label2id": {"LABEL_0": 0, "LABEL_1": 1},
    "is_encoder_decoder": False,
    "output_attentions": False,
    "output_hidden_states": False,
    "problem_type": None,
    "return_dict": True,
    "torch_dtype": None,
}
# Token-id fields shared by both original generator configs.
_TOKEN_FIELDS = (
    "pad_token_id",
    "im_start_token_id",
    "im_end_token_id",
    "audio_start_token_id",
    "audio_end_token_id",
    "audio_user_slot_token_id",
    "audio_assistant_gen_slot_token_id",
    "audio_assistant_delay_slot_token_id",
)


def _with_extras(config, fields: dict[str, Any]) -> dict[str, Any]:
    """``fields`` on top of the original fields the converter remembered (computed values win)."""
    extras = dict(getattr(config, EXTRA_FIELDS_KEY, None) or {})
    if "sample_rate" in extras:  # the codec's alias of sampling_rate
        extras["sample_rate"] = fields.get("sampling_rate", extras["sample_rate"])
    return {**extras, **fields}


def _language_config(config) -> dict[str, Any]:
    text = config.text_config.to_dict()
    if isinstance(text.get("id2label"), dict):  # JSON keys are strings
        text["id2label"] = {str(k): v for k, v in text["id2label"].items()}
    text.pop("transformers_version", None)
    for key, default in _BASE_CONFIG_DEFAULTS.items():
        if key in text and text[key] == default:
            del text[key]
    text["model_type"] = "qwen3"
    return text


def _dtype_name(config) -> str | None:
    dtype = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    if dtype is None:
        return None
    return str(dtype).removeprefix("torch.")


def _generator_config(config) -> dict[str, Any]:
    """The fields both original generator configs share (Delay's `MossTTSDelayConfig`)."""
    if getattr(config.text_config, "tie_word_embeddings", False) or getattr(config, "tie_word_embeddings", False):
        raise OriginalLayoutError(
            "tie_word_embeddings=True cannot be represented: the original model always stores its own text head "
            "(lm_heads.0); untie the weights before exporting"
        )
    out: dict[str, Any] = {
        "architectures": ["MossTTSDelayModel"],
        "model_type": "moss_tts_delay",
        "language_config": _language_config(config),
        "n_vq": config.n_vq,
        "audio_vocab_size": config.audio_vocab_size,
        "audio_pad_code": config.audio_pad_code,
        "sampling_rate": config.sampling_rate,
        "initializer_range": config.initializer_range,
        "hidden_size": config.text_config.hidden_size,
        "vocab_size": config.text_config.vocab_size,
        "transformers_version": transformers.__version__,
    }
    out.update({name: int(getattr(config, name)) for name in _TOKEN_FIELDS})
    dtype = _dtype_name(config)
    if dtype is not None:
        out["dtype"] = dtype
    return out


def original_delay_config(config) -> dict[str, Any]:
    """``config.json`` dict of the original MOSS-TTS Delay model for a `CodecTTSDelayConfig`."""
    return _with_extras(config, _generator_config(config))


def original_local_config(config) -> dict[str, Any]:
    """``config.json`` dict of the original MOSS-TTS-Local 1.0 model for a `CodecTTSLocalConfig`."""
    if float(config.head_norm_eps) != 1e-6:
        raise OriginalLayoutError(
            f"head_norm_eps={config.head_norm_eps} cannot be represented: the original pre-head RMSNorms use a fixed "
            "epsilon of 1e-6"
        )
    out = _generator_config(config)
    out.update(
        local_num_layers=config.local_num_layers,
        local_hidden_size=config.local_hidden_size,
        local_ffn_hidden_size=config.local_intermediate_size,
        additional_mlp_ffn_hidden_size=config.adapter_intermediate_size,
    )
    return _with_extras(config, out)


def _check_keys(state: Mapping[str, torch.Tensor], expected: set[str], what: str) -> None:
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise OriginalLayoutError(
            f"{what} cannot be exported to the original layout: "
            + "; ".join(
                part
                for part in (
                    f"missing tensors {missing[:8]}" if missing else "",
                    f"tensors the original has no place for {unexpected[:8]}" if unexpected else "",
                )
                if part
            )
        )


def original_delay_state_dict(state: Mapping[str, torch.Tensor], config) -> dict[str, torch.Tensor]:
    """Our Delay tensors -> original names (``language_model.*``, ``emb_ext.{j}``, ``lm_heads.{k}``)."""
    n, rows = config.n_vq, config.audio_num_embeddings
    backbone = {k for k in state if k.startswith("model.")}
    _check_keys(
        state, backbone | {"audio_embed_tokens.weight", "lm_head.weight", "audio_lm_head.weight"}, "Delay model"
    )
    out = {"language_model." + k[len("model.") :]: state[k] for k in sorted(backbone)}
    for name, prefix, first in (("audio_embed_tokens.weight", "emb_ext", 0), ("audio_lm_head.weight", "lm_heads", 1)):
        fused = state[name]
        if fused.shape[0] != n * rows:
            raise CheckpointMismatchError(f"{name} has {fused.shape[0]} rows, expected n_vq * {rows} = {n * rows}")
        for j in range(n):
            # clone: the shards must not share storage (safetensors refuses aliased tensors)
            out[f"{prefix}.{j + first}.weight"] = fused[j * rows : (j + 1) * rows].clone()
    out["lm_heads.0.weight"] = state["lm_head.weight"]
    return out


# (our prefix, original prefix), the inverse of codectts.conversion.local's mapping
_LOCAL_PREFIXES = (
    ("model.embed_tokens.", "model.embedding_list."),
    ("model.language_model.", "model.language_model."),
    ("local_transformer.", "local_transformer."),
    ("local_input_adapter.", "speech_embedding_to_local_mlp."),
    ("local_output_adapters.", "local_to_speech_embedding_mlps."),
    ("head_norms.", "layer_norm_before_lm_heads."),
    ("lm_heads.", "lm_heads."),
)
_LOCAL_UNUSED_EMBEDDING = "model.language_model.embed_tokens.weight"


def original_local_state_dict(state: Mapping[str, torch.Tensor], config) -> dict[str, torch.Tensor]:
    """Our Local tensors -> original names; adds the unused backbone embedding as a copy of the text embedding."""
    out: dict[str, torch.Tensor] = {}
    for key in sorted(state):
        for ours, original in _LOCAL_PREFIXES:
            if key.startswith(ours):
                out[original + key[len(ours) :]] = state[key]
                break
        else:
            raise OriginalLayoutError(f"Local model tensor {key!r} has no place in the original layout")
    text_embedding = out.get("model.embedding_list.0.weight")
    if text_embedding is None:
        raise OriginalLayoutError("the Local model has no text embedding (model.embed_tokens.0.weight)")
    out.setdefault(_LOCAL_UNUSED_EMBEDDING, text_embedding.clone())
    return out


# ---------------------------------------------------------------------------------------------------------------------
# audio tokenizer (codec)
# ---------------------------------------------------------------------------------------------------------------------

# our per-layer name -> original per-layer name (inverse of codectts.conversion.audio_tokenizer)
_CODEC_LAYER_NAMES = {
    "self_attn.qkv_proj.weight": "self_attn.in_projs.0.weight",
    "self_attn.o_proj.weight": "self_attn.out_projs.0.weight",
    "input_layernorm.weight": "norm1.weight",
    "input_layernorm.bias": "norm1.bias",
    "post_attention_layernorm.weight": "norm2.weight",
    "post_attention_layernorm.bias": "norm2.bias",
    "mlp.fc1.weight": "linear1.weight",
    "mlp.fc2.weight": "linear2.weight",
    "self_attn_layer_scale.scale": "layer_scale_1.scale",
    "mlp_layer_scale.scale": "layer_scale_2.scale",
}


def _weight_norm_magnitude(v: torch.Tensor) -> torch.Tensor:
    """Per-output-channel norm of ``v`` exactly as PyTorch's weight-norm kernel computes it (so that ``g / ||v||`` is
    exactly 1 and the effective weight is ``v`` bit for bit); falls back to ``vector_norm``."""
    try:
        return torch._weight_norm_interface(v, torch.ones_like(v[:, :1, :1]), 0)[1].view(-1, 1, 1).to(v.dtype)
    except (AttributeError, RuntimeError):  # pragma: no cover - private kernel unavailable
        return torch.linalg.vector_norm(v, dim=(1, 2), keepdim=True)


def unfold_weight_norm(weight: torch.Tensor, name: str = "weight") -> tuple[torch.Tensor, torch.Tensor]:
    """``[out, in]`` linear weight -> weight-norm pair ``(g [out, 1, 1], v [out, in, 1])`` of a 1x1 convolution whose
    effective weight ``g * v / ||v||`` is ``weight`` again.

    Raises `OriginalLayoutError` for an all-zero output row (weight norm cannot represent it: ``0 / 0``).
    """
    if weight.dim() != 2:
        raise CheckpointMismatchError(f"{name}: expected an [out, in] weight, got shape {tuple(weight.shape)}")
    v = weight.detach()[:, :, None].clone()
    g = _weight_norm_magnitude(v)
    if bool((g == 0).any()):
        rows = (g.flatten() == 0).nonzero().flatten()[:8].tolist()
        raise OriginalLayoutError(f"{name} has all-zero rows {rows}: weight norm (g * v / ||v||) cannot represent them")
    return g, v


def original_audio_tokenizer_config(config) -> dict[str, Any]:
    """``config.json`` dict of the original MOSS-Audio-Tokenizer for a `CodecTTSAudioTokenizerConfig`."""
    if float(config.layer_norm_eps) != 1e-5:
        raise OriginalLayoutError(
            f"layer_norm_eps={config.layer_norm_eps} cannot be represented: the original LayerNorms use 1e-5"
        )

    def stage(spec: dict) -> dict[str, Any]:
        if spec["type"] == "patchify":
            return {"module_type": "PatchedPretransform", "patch_size": spec["patch_size"]}
        return {
            "causal": True,
            "conv_layout": True,
            "d_model": spec["hidden_size"],
            "dim_feedforward": spec["intermediate_size"],
            "gating": "none",
            "input_dimension": spec["input_size"],
            # the original stores LayerScale's init value (null = no LayerScale)
            "layer_scale": _json_number(config.layer_scale_initial_scale) if spec["layer_scale"] else None,
            "max_period": _json_number(spec["rope_theta"]),
            "module_type": "Transformer",
            "norm": "layer_norm",
            "num_heads": spec["num_attention_heads"],
            "num_layers": spec["num_layers"],
            "output_dimension": spec["output_size"],
            "positional_embedding": "rope",
        }

    out: dict[str, Any] = {
        "architectures": ["MossAudioTokenizerModel"],
        "model_type": "moss-audio-tokenizer",
        "sampling_rate": config.sampling_rate,
        "downsample_rate": config.downsample_rate,
        "causal_transformer_context_duration": float(config.context_duration),
        "encoder_kwargs": [stage(s) for s in config.encoder_stages],
        "decoder_kwargs": [stage(s) for s in config.decoder_stages],
        "quantizer_type": "rlfq",
        "quantizer_kwargs": {
            "codebook_dim": config.codebook_dim,
            "codebook_size": config.codebook_size,
            "input_dim": config.quantizer_input_size,
            "num_quantizers": config.num_quantizers,
            "output_dim": config.quantizer_output_size,
            "quantizer_type": "rlfq",
            "rvq_dim": config.quantizer_hidden_size,
        },
        "transformers_version": transformers.__version__,
    }
    dtype = _dtype_name(config)
    if dtype is not None:
        out["dtype"] = dtype
    return _with_extras(config, out)


def original_audio_tokenizer_state_dict(state: Mapping[str, torch.Tensor], config) -> dict[str, torch.Tensor]:
    """Our codec tensors -> original names, the quantizer's linear layers as weight-norm pairs."""
    out: dict[str, torch.Tensor] = {}
    layer_key = re.compile(r"^(encoder|decoder)\.stages\.(\d+)\.layers\.(\d+)\.(.+)$")
    proj_key = re.compile(r"^(encoder|decoder)\.stages\.(\d+)\.(input_proj|output_proj)\.weight$")
    conv_key = re.compile(r"^quantizer\.(input_proj|output_proj|layers\.(\d+)\.(in_proj|out_proj))\.(weight|bias)$")
    codebook_key = re.compile(r"^quantizer\.layers\.(\d+)\.codebook\.weight$")
    for key in sorted(state):
        tensor = state[key]
        if (m := layer_key.match(key)) and m.group(4) in _CODEC_LAYER_NAMES:
            part, stage, layer, rest = m.groups()
            out[f"{part}.{stage}.transformer.layers.{layer}.{_CODEC_LAYER_NAMES[rest]}"] = tensor
        elif m := proj_key.match(key):
            out[f"{m.group(1)}.{m.group(2)}.{m.group(3)}.weight"] = tensor
        elif m := codebook_key.match(key):
            out[f"quantizer.quantizers.{m.group(1)}.codebook.weight"] = tensor
        elif m := conv_key.match(key):
            _, q, proj, kind = m.groups()
            prefix = f"quantizer.quantizers.{q}.{proj}" if q is not None else f"quantizer.{m.group(1)}"
            if kind == "bias":
                out[f"{prefix}.bias"] = tensor
            else:
                out[f"{prefix}.{_WN}0"], out[f"{prefix}.{_WN}1"] = unfold_weight_norm(tensor, key)
        else:
            raise OriginalLayoutError(f"audio tokenizer tensor {key!r} has no place in the original layout")
    from .audio_tokenizer import original_tensor_shapes

    expected = original_tensor_shapes(config)
    _check_keys(out, set(expected), "audio tokenizer")
    return out


# ---------------------------------------------------------------------------------------------------------------------
# folders
# ---------------------------------------------------------------------------------------------------------------------

# Top-level fields of the original configs that our configs model (everything else is an "extra").
_MODELED_FIELDS = {
    "delay": {
        "architectures",
        "model_type",
        "language_config",
        "n_vq",
        "audio_vocab_size",
        "audio_pad_code",
        "sampling_rate",
        "initializer_range",
        "hidden_size",
        "vocab_size",
        "transformers_version",
        "dtype",
        "torch_dtype",
        *_TOKEN_FIELDS,
    },
    "audio_tokenizer": {
        "architectures",
        "model_type",
        "sampling_rate",
        "downsample_rate",
        "causal_transformer_context_duration",
        "encoder_kwargs",
        "decoder_kwargs",
        "quantizer_type",
        "quantizer_kwargs",
        "transformers_version",
        "dtype",
        "torch_dtype",
    },
}
_MODELED_FIELDS["local"] = _MODELED_FIELDS["delay"] | {
    "local_num_layers",
    "local_hidden_size",
    "local_ffn_hidden_size",
    "additional_mlp_ffn_hidden_size",
}


def record_original_extra_fields(kind: str, original: dict, converted: str | os.PathLike) -> None:
    """Store the fields of the original ``config.json`` dict that our config does not model in the converted folder's
    ``config.json`` (key ``original_extra_fields``), so that :func:`export_original` can write them back.

    Nothing is written when there are none, or for a family without an original-layout export (Realtime).
    """
    import json

    if kind not in _MODELED_FIELDS:
        return
    extras = {k: v for k, v in original.items() if k not in _MODELED_FIELDS[kind]}
    if not extras:
        return
    path = Path(converted) / "config.json"
    config = read_json(path)
    config[EXTRA_FIELDS_KEY] = extras
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _load_config(folder: Path):
    from transformers import AutoConfig

    import codectts  # noqa: F401  (registers our configs with AutoConfig)

    return AutoConfig.from_pretrained(folder)


def _check_source(folder: Path) -> dict:
    if (folder / "adapter_config.json").is_file() and not (folder / "config.json").is_file():
        raise OriginalLayoutError(
            f"{folder} holds a PEFT adapter, not a model: merge it first (`model.merge_and_unload().save_pretrained(...)`"
            " or `codectts finetune`, which saves the merged model) and export the merged folder"
        )
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder} has no config.json")
    config = read_json(folder / "config.json")
    model_type = config.get("model_type")
    if (
        model_type in ("moss_tts_delay", "moss_tts_realtime", "moss-audio-tokenizer", "speech_tokenizer")
        or "language_config" in config
    ):
        raise OriginalLayoutError(f"{folder} is already in the original layout (model_type {model_type!r})")
    if model_type not in _WRITERS:
        raise OriginalLayoutError(
            f"{folder}: model_type {model_type!r} has no official MOSS layout (supported: {sorted(_WRITERS)}; "
            "MOSS-TTS-Realtime is not supported yet)"
        )
    return config


def _write_model(src: Path, out: Path, max_shard_bytes: int) -> str:
    import json

    model_type = _check_source(src)["model_type"]
    config = _load_config(src)
    make_config, make_state = _WRITERS[model_type]
    original_config = make_config(config)  # refuses unrepresentable settings before any tensor is read
    state = make_state(load_state_dict(src), config)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(original_config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    save_sharded_safetensors(state, out, max_shard_bytes)
    return model_type


_WRITERS = {
    "codectts_delay": (original_delay_config, original_delay_state_dict),
    "codectts_local": (original_local_config, original_local_state_dict),
    "codectts_audio_tokenizer": (original_audio_tokenizer_config, original_audio_tokenizer_state_dict),
}


# Files of a release snapshot that make a folder loadable by the original remote code and the engines (code, processor
# and tokenizer); everything else (config.json, weights, README, ...) comes from the export itself.
_RELEASE_CODE_PATTERNS = ("*.py", "processor_config.json", "preprocessor_config.json", *TOKENIZER_FILES)


def _copy_release_code(release: Path, out: Path) -> list[str]:
    if not release.is_dir():
        raise FileNotFoundError(f"original code folder {release} does not exist")
    copied = []
    for pattern in _RELEASE_CODE_PATTERNS:
        for path in sorted(release.glob(pattern)):
            if path.is_file():
                shutil.copy2(path, out / path.name)
                copied.append(path.name)
    if not any(name.endswith(".py") for name in copied):
        raise FileNotFoundError(
            f"{release} has no remote-code files (*.py): pass the folder of the original release "
            "(e.g. a download of OpenMOSS-Team/MOSS-TTS) whose code should load the exported weights"
        )
    return copied


def export_original(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    overwrite: bool = False,
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
    original_code: str | os.PathLike | None = None,
) -> Path:
    """Write the official MOSS layout of the codectts folder ``src`` into ``dst``; returns ``dst``.

    Args:
        src: a converted (or fine-tuned and merged) audio tokenizer, Delay or Local folder, or a bundle (generator +
            tokenizer files + ``audio_tokenizer/``).
        dst: output folder, written completely or not at all; must not exist or be empty unless ``overwrite``.
        max_shard_bytes: largest safetensors shard; bigger models get ``model-0000i-of-0000n.safetensors`` files and
            ``model.safetensors.index.json``.
        original_code: a snapshot of the original release (e.g. ``OpenMOSS-Team/MOSS-TTS``) whose remote code
            (``*.py``), ``processor_config.json`` and tokenizer files are copied next to the weights, so that
            ``trust_remote_code`` loaders and the serving engines find them (codectts ships none of that code).

    Raises:
        OriginalLayoutError: ``src`` holds something the original layout cannot represent (see the module docstring).
    """
    src, dst = Path(src), Path(dst)
    if dst.exists() and same_folder(src, dst):
        raise ValueError("the destination must differ from the source folder (the source is never modified)")
    if max_shard_bytes < 1:
        raise ValueError(f"max_shard_bytes must be positive, got {max_shard_bytes}")
    _check_source(src)
    with atomic_output_dir(dst, overwrite=overwrite) as out:
        _write_model(src, out, max_shard_bytes)
        for name in TOKENIZER_FILES:
            if (src / name).is_file():
                shutil.copy2(src / name, out / name)
        codec = src / AUDIO_TOKENIZER_SUBFOLDER
        if (codec / "config.json").is_file():
            _write_model(codec, out / AUDIO_TOKENIZER_SUBFOLDER, max_shard_bytes)
        if original_code is not None:
            _copy_release_code(Path(original_code), out)
    return dst
