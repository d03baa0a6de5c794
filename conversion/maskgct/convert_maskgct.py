"""Official MaskGCT checkpoints -> a codectts folder.

Source layout (Hub ``amphion/MaskGCT``; no root config.json)::

    semantic_codec/model.safetensors                 RepCodec
    acoustic_codec/model.safetensors                 acoustic encoder   (-> acoustic_codec encoder.*)
    acoustic_codec/model_1.safetensors               RVQ + Vocos decoder (-> acoustic_codec decoder.*)
    t2s_model/model.safetensors                      T2S
    s2a_model/s2a_model_1layer/model.safetensors     S2A, layer 0
    s2a_model/s2a_model_full/model.safetensors       S2A, all layers

plus the original config (``maskgct.json``, key ``model``; default: the official values), the w2v-bert-2.0 folder
(transformers layout; truncated to the layers used) and the feature statistics (``wav2vec2bert_stats.pt`` or a
safetensors file with ``mean`` / ``var``; default: the official file shipped with codectts, MIT).

Output: root ``config.json`` (`MaskGctConfig`) + ``processor_config.json`` and one loadable sub-folder per
component (``semantic_model/``, ``semantic_codec/``, ``acoustic_codec/``, ``t2s/``, ``s2a_1layer/``,
``s2a_full/``).
"""

from __future__ import annotations

import json
import os
import re
from importlib import resources
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from ...configuration.maskgct import (
    MaskGctAcousticCodecConfig,
    MaskGctConfig,
    MaskGctS2AConfig,
    MaskGctSemanticCodecConfig,
    MaskGctT2SConfig,
)
from ...configuration.maskgct.configuration_maskgct import OFFICIAL_MASKGCT_CONFIG
from ..io import CheckpointMismatchError, check_state_dict, write_converted_model

MASKGCT_FILES = {
    "semantic_codec": "semantic_codec/model.safetensors",
    "acoustic_encoder": "acoustic_codec/model.safetensors",
    "acoustic_decoder": "acoustic_codec/model_1.safetensors",
    "t2s": "t2s_model/model.safetensors",
    "s2a_1layer": "s2a_model/s2a_model_1layer/model.safetensors",
    "s2a_full": "s2a_model/s2a_model_full/model.safetensors",
}
DEFAULT_SEMANTIC_MODEL = "facebook/w2v-bert-2.0"
SEMANTIC_LAYER = 17


def is_maskgct_folder(src: str | os.PathLike) -> bool:
    """True when ``src`` has the official MaskGCT sub-folders (it has no root config.json)."""
    src = Path(src)
    return (src / "t2s_model").is_dir() and (src / "s2a_model").is_dir() and (src / "acoustic_codec").is_dir()


def _read_original_config(path: str | os.PathLike | None) -> dict:
    if path is None:
        return OFFICIAL_MASKGCT_CONFIG
    text = Path(path).read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        try:  # the original loader reads JSON5 (comments, trailing commas)
            import json5

            data = json5.loads(text)
        except ImportError:
            stripped = re.sub(r"(?m)^\s*//.*$", "", text)
            data = json.loads(re.sub(r",(\s*[}\]])", r"\1", stripped))
    block = data.get("model", data)
    missing = [k for k in ("t2s_model", "s2a_model", "semantic_codec", "acoustic_codec") if k not in block]
    if missing:
        raise ValueError(f"{path}: the MaskGCT config (key 'model') lacks {missing}")
    return block


def _expected_shapes(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _meta_model(cls, config):
    with torch.device("meta"):
        return cls(config)


def _load(src: Path, rel: str) -> dict[str, torch.Tensor]:
    file = src / rel
    if not file.is_file():
        raise FileNotFoundError(f"{file} is missing (official MaskGCT layout: {sorted(MASKGCT_FILES.values())})")
    return _rename_weight_norm(load_file(str(file)))


def _rename_weight_norm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Legacy ``torch.nn.utils.weight_norm`` keys -> the parametrization's (what our codec layers use)."""
    renamed = {}
    for key, value in state.items():
        key = re.sub(r"\.weight_g$", ".parametrizations.weight.original0", key)
        renamed[re.sub(r"\.weight_v$", ".parametrizations.weight.original1", key)] = value
    return renamed


def _load_stats(path: str | os.PathLike | None) -> dict[str, torch.Tensor]:
    if path is None:
        with resources.as_file(resources.files(__package__).joinpath("wav2vec2bert_stats.safetensors")) as f:
            stats = load_file(str(f))
    elif str(path).endswith(".safetensors"):
        stats = load_file(str(path))
    else:
        stats = torch.load(str(path), map_location="cpu", weights_only=True)
    if not isinstance(stats, dict) or not {"mean", "var"} <= set(stats):
        raise CheckpointMismatchError(f"{path}: the semantic statistics need 'mean' and 'var' tensors")
    return {
        "mean": torch.as_tensor(stats["mean"]).float().reshape(-1),
        "var": torch.as_tensor(stats["var"]).float().reshape(-1),
    }


def _semantic_model(path: str | os.PathLike | None, layer: int):
    """Wav2Vec2Bert config + state dict truncated to ``layer`` layers, the folder's feature extractor and the
    source checkpoint's number of layers."""
    from transformers import SeamlessM4TFeatureExtractor, Wav2Vec2BertConfig, Wav2Vec2BertModel

    folder = Path(path) if path is not None else None
    if folder is None or not folder.is_dir():
        from huggingface_hub import snapshot_download

        repo = str(path) if path is not None else DEFAULT_SEMANTIC_MODEL
        try:
            folder = Path(snapshot_download(repo, allow_patterns=["*.json", "*.safetensors"]))
        except Exception as err:
            raise FileNotFoundError(
                f"the semantic model {repo!r} is not a folder and could not be fetched; pass --semantic-model DIR "
                "(a facebook/w2v-bert-2.0 download)"
            ) from err
    config = Wav2Vec2BertConfig.from_pretrained(str(folder))
    source_layers = config.num_hidden_layers
    if layer > config.num_hidden_layers:
        raise ValueError(f"the semantic model has {config.num_hidden_layers} layers, MaskGCT reads layer {layer}")
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no safetensors weights in the semantic model folder {folder}")
    state: dict[str, torch.Tensor] = {}
    for file in files:
        with safe_open(str(file), framework="pt") as f:
            for key in f.keys():  # noqa: SIM118 (safe_open is not iterable)
                name = key.removeprefix("wav2vec2_bert.")
                match = re.match(r"encoder\.layers\.(\d+)\.", name)
                if match and int(match.group(1)) >= layer:
                    continue  # layers above the one MaskGCT reads are never used
                if name.startswith(("adapter.", "lm_head.", "projector.", "classifier.", "intermediate_ffn.")):
                    continue
                state[name] = f.get_tensor(key)
    config.num_hidden_layers = layer
    config.add_adapter = False
    expected = _expected_shapes(_meta_model(Wav2Vec2BertModel, config))
    if "masked_spec_embed" not in state and "masked_spec_embed" in expected:
        state["masked_spec_embed"] = torch.zeros(expected["masked_spec_embed"])  # training-only (SpecAugment)
    check_state_dict(state, expected, f"semantic model {folder}")
    feature_extractor = None
    if (folder / "preprocessor_config.json").is_file():
        feature_extractor = SeamlessM4TFeatureExtractor.from_pretrained(str(folder))
    return config, state, feature_extractor, source_layers


def write_converted_maskgct(
    src: str | os.PathLike,
    out: Path,
    *,
    config: str | os.PathLike | None = None,
    semantic_model: str | os.PathLike | None = None,
    semantic_stats: str | os.PathLike | None = None,
) -> None:
    """Convert the official MaskGCT folder ``src`` into the (existing, empty) folder ``out``."""
    from ...modeling.maskgct import (
        MaskGctAcousticCodecModel,
        MaskGctS2AModel,
        MaskGctSemanticCodecModel,
        MaskGctT2SModel,
    )
    from ...processing.maskgct import MaskGctProcessor, MaskGctTokenizer

    src, out = Path(src), Path(out)
    block = _read_original_config(config)
    s2a_block = block["s2a_model"]
    configs = {
        "semantic_codec": MaskGctSemanticCodecConfig.from_original(block["semantic_codec"]),
        "acoustic_codec": MaskGctAcousticCodecConfig.from_original(block["acoustic_codec"]),
        "t2s": MaskGctT2SConfig.from_original(block["t2s_model"]),
        "s2a_1layer": MaskGctS2AConfig.from_original(s2a_block["s2a_1layer"]),
        "s2a_full": MaskGctS2AConfig.from_original(s2a_block["s2a_full"]),
    }
    classes = {
        "semantic_codec": MaskGctSemanticCodecModel,
        "acoustic_codec": MaskGctAcousticCodecModel,
        "t2s": MaskGctT2SModel,
        "s2a_1layer": MaskGctS2AModel,
        "s2a_full": MaskGctS2AModel,
    }

    # --- generator weights: the original key names are ours
    states = {"t2s": _load(src, MASKGCT_FILES["t2s"])}
    for name in ("s2a_1layer", "s2a_full"):
        state = _load(src, MASKGCT_FILES[name])
        state.pop("diff_estimator.embed_tokens.weight", None)  # empty leftover of the original (quirk Q-S1)
        states[name] = state

    # --- acoustic codec: two files -> encoder.* / decoder.*
    acoustic = {f"encoder.{k}": v for k, v in _load(src, MASKGCT_FILES["acoustic_encoder"]).items()}
    decoder = _load(src, MASKGCT_FILES["acoustic_decoder"])
    window = decoder.pop("model.head.istft.window", None)
    n_fft = configs["acoustic_codec"].n_fft
    if window is not None and (
        window.shape != (n_fft,) or not torch.allclose(window.float(), torch.hann_window(n_fft), atol=1e-6)
    ):
        raise CheckpointMismatchError(
            f"acoustic_codec/model_1.safetensors: model.head.istft.window is not a Hann window of n_fft={n_fft}"
        )
    acoustic.update({f"decoder.{k}": v for k, v in decoder.items()})
    states["acoustic_codec"] = acoustic

    # --- semantic codec + feature statistics
    semantic = _load(src, MASKGCT_FILES["semantic_codec"])
    stats = _load_stats(semantic_stats)
    hidden = configs["semantic_codec"].hidden_size
    if stats["mean"].shape != (hidden,) or stats["var"].shape != (hidden,):
        raise CheckpointMismatchError(
            f"semantic statistics have {tuple(stats['mean'].shape)} values, the semantic codec expects {hidden}"
        )
    if not (stats["var"] > 0).all():
        raise CheckpointMismatchError("semantic statistics: 'var' must be positive")
    semantic["feature_mean"], semantic["feature_var"] = stats["mean"], stats["var"]
    states["semantic_codec"] = semantic

    for name, state in states.items():
        check_state_dict(state, _expected_shapes(_meta_model(classes[name], configs[name])), f"{name} ({src})")

    w2v_config, w2v_state, feature_extractor, source_layers = _semantic_model(semantic_model, SEMANTIC_LAYER)
    if w2v_config.hidden_size != hidden:
        raise CheckpointMismatchError(
            f"the semantic model's hidden size ({w2v_config.hidden_size}) differs from the semantic codec's ({hidden})"
        )

    full = MaskGctConfig(
        semantic_model_config=w2v_config,
        semantic_codec_config=configs["semantic_codec"],
        acoustic_codec_config=configs["acoustic_codec"],
        t2s_config=configs["t2s"],
        s2a_1layer_config=configs["s2a_1layer"],
        s2a_full_config=configs["s2a_full"],
        semantic_layer=SEMANTIC_LAYER,
        semantic_rng_draws=source_layers,
    )
    if configs["s2a_full"].num_quantizer != configs["acoustic_codec"].num_quantizers:
        raise CheckpointMismatchError("s2a_full.num_quantizer differs from the acoustic codec's num_quantizers")
    full.architectures = ["MaskGctForTextToSpeech"]
    full.save_pretrained(out)
    write_converted_model(out / "semantic_model", w2v_config, w2v_state, "Wav2Vec2BertModel")
    for name, state in states.items():
        write_converted_model(
            out / name, configs[name], state, type(_meta_model(classes[name], configs[name])).__name__
        )
    processor = MaskGctProcessor(
        feature_extractor=feature_extractor, sampling_rate=configs["acoustic_codec"].sampling_rate
    )
    processor.save_pretrained(out)
    MaskGctTokenizer().save_pretrained(out)
    from .model_card import render_maskgct_card

    (out / "README.md").write_text(render_maskgct_card(repo_id=out.name, config=full.to_dict()), encoding="utf-8")
