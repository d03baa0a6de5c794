"""Convert an original MOSS-Audio-Tokenizer folder into a codectts audio tokenizer folder.

What changes:

* ``config.json``: ``encoder_kwargs``/``decoder_kwargs``/``quantizer_kwargs`` become our ``encoder_stages``/
  ``decoder_stages``/quantizer fields (see ``CodecTTSAudioTokenizerConfig.from_original_config``).
* Weight norm is **folded**: every ``parametrizations.weight.original0/1`` (g, v) pair of the quantizer's 1x1
  convolutions becomes one plain ``[out, in]`` linear weight ``g * v / ||v||``, computed by PyTorch's own weight-norm
  parametrization so it is bit-identical to what the original evaluates at every call. Weight norm is a training
  reparametrisation; folding gives the exact same function with plain tensors that cast, quantise and export
  (ONNX/MLX fold it too) without parametrization hooks.
* Key names follow transformers conventions (``qkv_proj``/``o_proj``, ``input_layernorm``, ``mlp.fc1`` ...);
  the fused QKV layout (rows Q, K, V, head-major) is kept as is.

Legacy names accepted in the source: ``weight_g``/``weight_v`` (old weight-norm API) and attention
``in_proj_weight``/``in_proj.weight``/``out_proj.weight``. Missing, unexpected or mis-shaped tensors raise
``CheckpointMismatchError`` naming them. The source folder is only read.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch
from torch import nn

from ...configuration.moss.audio_tokenizer import CodecTTSAudioTokenizerConfig
from ...modeling.moss.audio_tokenizer import CodecTTSAudioTokenizerModel
from ..io import CheckpointMismatchError, check_state_dict, load_state_dict, read_json

_WN = "parametrizations.weight.original"

# original per-layer name -> our per-layer name
_LAYER_RENAMES = {
    "self_attn.in_projs.0.weight": "self_attn.qkv_proj.weight",
    "self_attn.out_projs.0.weight": "self_attn.o_proj.weight",
    "norm1.weight": "input_layernorm.weight",
    "norm1.bias": "input_layernorm.bias",
    "norm2.weight": "post_attention_layernorm.weight",
    "norm2.bias": "post_attention_layernorm.bias",
    "linear1.weight": "mlp.fc1.weight",
    "linear2.weight": "mlp.fc2.weight",
    "layer_scale_1.scale": "self_attn_layer_scale.scale",
    "layer_scale_2.scale": "mlp_layer_scale.scale",
}

_LEGACY_ALIASES = [
    (re.compile(r"\.weight_g$"), f".{_WN}0"),
    (re.compile(r"\.weight_v$"), f".{_WN}1"),
    (re.compile(r"\.self_attn\.in_proj(_weight|\.weight)$"), ".self_attn.in_projs.0.weight"),
    (re.compile(r"\.self_attn\.out_proj\.weight$"), ".self_attn.out_projs.0.weight"),
]


def original_tensor_shapes(config: CodecTTSAudioTokenizerConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor an original checkpoint for ``config`` must contain, with its shape."""
    shapes: dict[str, tuple[int, ...]] = {}
    for part, stages in (("encoder", config.encoder_stages), ("decoder", config.decoder_stages)):
        for i, spec in enumerate(stages):
            if spec["type"] != "transformer":
                continue
            d, ffn = spec["hidden_size"], spec["intermediate_size"]
            if spec["input_size"] != d:
                shapes[f"{part}.{i}.input_proj.weight"] = (d, spec["input_size"])
            if spec["output_size"] != d:
                shapes[f"{part}.{i}.output_proj.weight"] = (spec["output_size"], d)
            for layer in range(spec["num_layers"]):
                p = f"{part}.{i}.transformer.layers.{layer}."
                shapes[p + "self_attn.in_projs.0.weight"] = (3 * d, d)
                shapes[p + "self_attn.out_projs.0.weight"] = (d, d)
                for norm in ("norm1", "norm2"):
                    shapes[p + f"{norm}.weight"] = (d,)
                    shapes[p + f"{norm}.bias"] = (d,)
                shapes[p + "linear1.weight"] = (ffn, d)
                shapes[p + "linear2.weight"] = (d, ffn)
                if spec["layer_scale"]:
                    shapes[p + "layer_scale_1.scale"] = (d,)
                    shapes[p + "layer_scale_2.scale"] = (d,)

    def conv(prefix: str, out_ch: int, in_ch: int) -> None:
        shapes[f"{prefix}.{_WN}0"] = (out_ch, 1, 1)
        shapes[f"{prefix}.{_WN}1"] = (out_ch, in_ch, 1)
        shapes[f"{prefix}.bias"] = (out_ch,)

    hidden = config.quantizer_hidden_size
    conv("quantizer.input_proj", hidden, config.quantizer_input_size)
    conv("quantizer.output_proj", config.quantizer_output_size, hidden)
    for q in range(config.num_quantizers):
        conv(f"quantizer.quantizers.{q}.in_proj", config.codebook_dim, hidden)
        conv(f"quantizer.quantizers.{q}.out_proj", hidden, config.codebook_dim)
        shapes[f"quantizer.quantizers.{q}.codebook.weight"] = (config.codebook_size, config.codebook_dim)
    return shapes


def _apply_legacy_aliases(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    renamed: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        new_key = key
        for pattern, replacement in _LEGACY_ALIASES:
            new_key = pattern.sub(replacement, new_key)
        if new_key in renamed:
            raise CheckpointMismatchError(f"tensor {new_key!r} is present under two names (legacy alias of {key!r})")
        renamed[new_key] = tensor
    return renamed


def fold_weight_norm(g: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``g * v / ||v||`` (norm over all dims but 0) of a 1x1 conv, returned as an ``[out, in]`` linear weight.

    Evaluated by ``torch.nn.utils.parametrizations.weight_norm`` itself, i.e. exactly what the original computes.
    """
    out_ch, in_ch, kernel = v.shape
    if kernel != 1:
        raise CheckpointMismatchError(f"expected a 1x1 convolution, got kernel size {kernel}")
    conv = nn.Conv1d(in_ch, out_ch, 1, bias=False, dtype=v.dtype)
    conv = nn.utils.parametrizations.weight_norm(conv, dim=0)
    with torch.no_grad():
        conv.parametrizations.weight.original0.copy_(g)
        conv.parametrizations.weight.original1.copy_(v)
        return conv.weight.detach()[:, :, 0].clone()


def convert_state_dict(
    original: dict[str, torch.Tensor], config: CodecTTSAudioTokenizerConfig
) -> dict[str, torch.Tensor]:
    """Map a (validated) original state dict to our parameter names, folding weight norm."""
    original = _apply_legacy_aliases(original)
    check_state_dict(original, original_tensor_shapes(config), "MOSS-Audio-Tokenizer checkpoint")
    converted: dict[str, torch.Tensor] = {}
    layer_key = re.compile(r"^(encoder|decoder)\.(\d+)\.transformer\.layers\.(\d+)\.(.+)$")
    proj_key = re.compile(r"^(encoder|decoder)\.(\d+)\.(input_proj|output_proj)\.weight$")
    for key, tensor in original.items():
        if key.startswith("quantizer."):
            continue
        if m := layer_key.match(key):
            part, stage, layer, rest = m.groups()
            converted[f"{part}.stages.{stage}.layers.{layer}.{_LAYER_RENAMES[rest]}"] = tensor
        elif m := proj_key.match(key):
            part, stage, proj = m.groups()
            converted[f"{part}.stages.{stage}.{proj}.weight"] = tensor
        else:  # pragma: no cover - excluded by check_state_dict
            raise CheckpointMismatchError(f"unexpected tensor {key!r}")

    def linear(src: str, dst: str) -> None:
        converted[f"{dst}.weight"] = fold_weight_norm(original[f"{src}.{_WN}0"], original[f"{src}.{_WN}1"])
        converted[f"{dst}.bias"] = original[f"{src}.bias"]

    linear("quantizer.input_proj", "quantizer.input_proj")
    linear("quantizer.output_proj", "quantizer.output_proj")
    for q in range(config.num_quantizers):
        linear(f"quantizer.quantizers.{q}.in_proj", f"quantizer.layers.{q}.in_proj")
        linear(f"quantizer.quantizers.{q}.out_proj", f"quantizer.layers.{q}.out_proj")
        converted[f"quantizer.layers.{q}.codebook.weight"] = original[f"quantizer.quantizers.{q}.codebook.weight"]
    return converted


def load_original_audio_tokenizer(src: str | os.PathLike) -> CodecTTSAudioTokenizerModel:
    """Read an original MOSS-Audio-Tokenizer folder and return the converted model (eval mode, float32)."""
    src = Path(src)
    if not (src / "config.json").is_file():
        raise FileNotFoundError(f"{src} has no config.json")
    config = CodecTTSAudioTokenizerConfig.from_original_config(read_json(src / "config.json"))
    state = convert_state_dict(load_state_dict(src), config)
    # Built on the meta device and given the converted tensors themselves (`assign=True`): a random init of the
    # released 1.77 B parameters would take ~40 s and a second copy of the weights in memory, only to be overwritten.
    with torch.device("meta"):
        model = CodecTTSAudioTokenizerModel(config)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    check_state_dict(state, expected, "converted audio tokenizer state dict")
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True, assign=True)
    return model.eval()


def write_converted_audio_tokenizer(src: Path, out: Path) -> None:
    """Convert the original folder ``src`` into our format inside the existing empty folder ``out``."""
    model = load_original_audio_tokenizer(src)
    model.save_pretrained(out)


__all__ = [
    "convert_state_dict",
    "fold_weight_norm",
    "load_original_audio_tokenizer",
    "original_tensor_shapes",
    "write_converted_audio_tokenizer",
]
