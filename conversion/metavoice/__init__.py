"""Converter from the official MetaVoice-1B checkpoint files to one codectts folder.

Source folder (the Hub repo ``metavoiceio/metavoice-1B-v0.1``): ``first_stage.pt``, ``second_stage.pt`` and
``speaker_encoder.pt`` (``torch.save`` pickles; all configuration and the BPE table live inside them; the repo's
``config.json`` is a stub). Each stage may instead be a sub-folder ``first_stage/`` / ``second_stage/`` holding
``model.safetensors`` (original keys) + ``model_args.json`` + ``tokenizer.json`` (the tiktoken dict with base64
ranks), and ``speaker_encoder/model.safetensors``.

Output: ``config.json`` (``codectts_metavoice``), ``model.safetensors`` (all networks, plus ``codec.*`` when an
EnCodec folder is bundled), ``processor_config.json`` + ``metavoice_tokenizer.json``. ``AutoModel`` /
``AutoProcessor`` / ``pipeline("text-to-speech")`` load it after ``import codectts``.

``.pt`` files are read with ``torch.load(weights_only=True)``: tensors, dicts, lists, str/bytes/numbers only, no
code execution. The released files also carry training state; should one of them hold other Python objects the
safe loader refuses it, and the converter stops with an explanation. Only if you trust the file, allow the full
(unsafe) unpickler with ``trust_pickle=True`` (CLI: environment variable ``CODECTTS_TRUST_PICKLE=1``).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch

from ..io import CheckpointMismatchError, atomic_output_dir, same_folder, save_sharded_safetensors

logger = logging.getLogger(__name__)

__all__ = ["convert_metavoice", "is_metavoice_folder", "load_original_checkpoint", "write_converted_metavoice"]

STAGES = ("first_stage", "second_stage", "speaker_encoder")


def _stage_source(src: Path, stage: str) -> Path | None:
    if (src / f"{stage}.pt").is_file():
        return src / f"{stage}.pt"
    if (src / stage / "model.safetensors").is_file():
        return src / stage
    return None


def is_metavoice_folder(src: str | os.PathLike) -> bool:
    """True when ``src`` holds the three MetaVoice checkpoints (``.pt`` files or safetensors sub-folders)."""
    src = Path(src)
    return src.is_dir() and all(_stage_source(src, stage) is not None for stage in STAGES)


def _strip_compile_prefix(state: dict) -> dict:
    # checkpoints saved from a torch.compile'd model prefix every key with `_orig_mod.`
    return {k.removeprefix("_orig_mod."): v for k, v in state.items()}


def load_original_checkpoint(path: str | os.PathLike, trust_pickle: bool | None = None) -> dict:
    """Read an original ``.pt`` file (safe loader first; see the module docstring)."""
    import pickle

    if trust_pickle is None:
        trust_pickle = os.environ.get("CODECTTS_TRUST_PICKLE", "") not in ("", "0", "false", "False")
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if not trust_pickle:
            raise CheckpointMismatchError(
                f"{path} holds Python objects beyond tensors/dicts/str/bytes/numbers, so the safe loader "
                f"(torch.load(weights_only=True)) refuses it: {str(error).splitlines()[0]}. If you trust the file "
                "(e.g. downloaded from metavoiceio/metavoice-1B-v0.1), rerun with trust_pickle=True or "
                "CODECTTS_TRUST_PICKLE=1, which runs the full unpickler."
            ) from error
        logger.warning("loading %s with the full unpickler (trust_pickle): it can run code from the file", path)
        return torch.load(str(path), map_location="cpu", weights_only=False)


def _read_stage(src: Path, stage: str, trust_pickle) -> tuple[dict, dict, dict]:
    """``(state_dict, model_args, meta)`` of one stage in either source format."""
    source = _stage_source(src, stage)
    if source is None:
        raise FileNotFoundError(f"{src} has neither {stage}.pt nor {stage}/model.safetensors")
    if source.suffix == ".pt":
        data = load_original_checkpoint(source, trust_pickle)
        if not isinstance(data, dict):
            raise CheckpointMismatchError(f"{source} is not a checkpoint dict")
        if stage == "speaker_encoder":
            state = data.get("model_state", data)
            return _strip_compile_prefix(state), {}, {}
        if "model" not in data or "model_args" not in data:
            raise CheckpointMismatchError(f"{source} lacks the 'model'/'model_args' entries of a MetaVoice checkpoint")
        model_args = dict(data["model_args"])
        model_args.setdefault("causal", data.get("config", {}).get("causal", True))
        return _strip_compile_prefix(data["model"]), model_args, dict(data.get("meta", {}))
    from safetensors.torch import load_file

    state = _strip_compile_prefix(load_file(str(source / "model.safetensors")))
    if stage == "speaker_encoder":
        return state, {}, {}
    model_args = json.loads((source / "model_args.json").read_text())
    meta = {}
    if (source / "tokenizer.json").is_file():
        meta["tokenizer"] = json.loads((source / "tokenizer.json").read_text())
    meta["speaker_cond"] = "speaker_cond_pos.weight" in state
    return state, model_args, meta


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise CheckpointMismatchError(message)


def _split_qkv(state: dict, prefix: str, out: dict, new_prefix: str, hidden: int) -> None:
    fused = state[prefix + "attn.c_attn.weight"]
    _expect(fused.shape == (3 * hidden, hidden), f"{prefix}attn.c_attn.weight has shape {tuple(fused.shape)}")
    q, k, v = fused.split(hidden, dim=0)
    out[new_prefix + "self_attn.q_proj.weight"] = q.clone()
    out[new_prefix + "self_attn.k_proj.weight"] = k.clone()
    out[new_prefix + "self_attn.v_proj.weight"] = v.clone()
    out[new_prefix + "self_attn.o_proj.weight"] = state[prefix + "attn.c_proj.weight"]
    out[new_prefix + "input_layernorm.weight"] = state[prefix + "ln_1.weight"]
    out[new_prefix + "post_attention_layernorm.weight"] = state[prefix + "ln_2.weight"]


def _check_args(model_args: dict, stage: str, **expected) -> None:
    for key, value in expected.items():
        found = model_args.get(key, value)
        _expect(found == value, f"{stage}: model_args[{key!r}] = {found!r}, this converter supports {value!r}")


def convert_first_stage(state: dict, model_args: dict, meta: dict):
    from ...configuration.metavoice import MetaVoiceFirstStageConfig

    _check_args(model_args, "first_stage", causal=True, bias=False, norm_type="rmsnorm", nonlinearity_type="swiglu")
    _expect(
        len(model_args["vocab_sizes"]) == 1 and not model_args.get("target_vocab_sizes"),
        "first_stage: expected one token stream with a tied head",
    )
    _expect("speaker_cond_pos.weight" in state, "first_stage: the checkpoint has no speaker conditioning")
    hidden = int(model_args["n_embd"])
    vocab = int(model_args["vocab_sizes"][0])
    config = MetaVoiceFirstStageConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        num_hidden_layers=int(model_args["n_layer"]),
        num_attention_heads=int(model_args["n_head"]),
        intermediate_size=int(state["transformer.h.0.mlp.swiglu.w1.weight"].shape[0]),
        swiglu_multiple_of=int(model_args.get("swiglu_multiple_of") or 256),
        max_position_embeddings=int(model_args["block_size"]),
        rms_norm_eps=float(model_args.get("rmsnorm_eps") or 1e-5),
        speaker_embedding_dim=int(state["speaker_cond_pos.weight"].shape[1]),
        text_offset=int(meta.get("tokenizer", {}).get("offset") or (vocab - 513)),
    )
    embed = state["transformer.wtes.0.weight"]
    head = state.get("lm_heads.0.weight", embed)
    _expect(torch.equal(head, embed), "first_stage: lm_heads.0 differs from wtes.0 (the released model ties them)")
    out = {
        "embed_tokens.weight": embed,
        "embed_positions.weight": state["transformer.wpe.weight"],
        "speaker_proj.weight": state["speaker_cond_pos.weight"],
        "norm.weight": state["transformer.ln_f.weight"],
    }
    for i in range(config.num_hidden_layers):
        p, q = f"transformer.h.{i}.", f"layers.{i}."
        _split_qkv(state, p, out, q, hidden)
        out[q + "mlp.gate_proj.weight"] = state[p + "mlp.swiglu.w1.weight"]
        out[q + "mlp.up_proj.weight"] = state[p + "mlp.swiglu.w3.weight"]
        out[q + "mlp.down_proj.weight"] = state[p + "mlp.c_proj.weight"]
    used = {
        "lm_heads.0.weight",
        "transformer.wtes.0.weight",
        "transformer.wpe.weight",
        "speaker_cond_pos.weight",
        "transformer.ln_f.weight",
    }
    used |= {k for k in state if k.startswith("transformer.h.")}
    _expect(not set(state) - used, f"first_stage: unexpected tensors {sorted(set(state) - used)[:8]}")
    return config, out


def convert_second_stage(state: dict, model_args: dict, meta: dict):
    from ...configuration.metavoice import MetaVoiceSecondStageConfig

    _check_args(model_args, "second_stage", causal=False, bias=False, norm_type="layernorm", nonlinearity_type="gelu")
    targets = list(model_args.get("target_vocab_sizes") or [])
    _expect(len(set(targets)) == 1, f"second_stage: expected equal output heads, got {targets}")
    _expect("speaker_cond_pos.weight" in state, "second_stage: the checkpoint has no speaker conditioning")
    hidden = int(model_args["n_embd"])
    vocab_sizes = [int(v) for v in model_args["vocab_sizes"]]
    config = MetaVoiceSecondStageConfig(
        vocab_sizes=vocab_sizes,
        num_output_heads=len(targets),
        output_vocab_size=targets[0],
        hidden_size=hidden,
        num_hidden_layers=int(model_args["n_layer"]),
        num_attention_heads=int(model_args["n_head"]),
        intermediate_size=int(state["transformer.h.0.mlp.c_fc.weight"].shape[0]),
        block_size=int(model_args["block_size"]),
        speaker_embedding_dim=int(state["speaker_cond_pos.weight"].shape[1]),
        codebook_size=targets[0] - 1,
        text_offset=int(meta.get("tokenizer", {}).get("offset") or targets[0]),
    )
    out = {
        "embed_positions.weight": state["transformer.wpe.weight"],
        "speaker_proj.weight": state["speaker_cond_pos.weight"],
        "norm.weight": state["transformer.ln_f.weight"],
    }
    for i in range(len(vocab_sizes)):
        out[f"embed_tokens.{i}.weight"] = state[f"transformer.wtes.{i}.weight"]
    for i in range(len(targets)):
        out[f"lm_heads.{i}.weight"] = state[f"lm_heads.{i}.weight"]
    for i in range(config.num_hidden_layers):
        p, q = f"transformer.h.{i}.", f"layers.{i}."
        _split_qkv(state, p, out, q, hidden)
        out[q + "mlp.fc_in.weight"] = state[p + "mlp.c_fc.weight"]
        out[q + "mlp.fc_out.weight"] = state[p + "mlp.c_proj.weight"]
    return config, out


def convert_speaker_encoder(state: dict):
    from ...configuration.metavoice import MetaVoiceSpeakerEncoderConfig

    # the original loads with strict=False (missing keys would silently stay random): we require every tensor
    layers = sum(1 for k in state if k.startswith("lstm.weight_ih_l"))
    _expect(layers > 0 and "linear.weight" in state, "speaker_encoder: expected lstm.* and linear.* tensors")
    config = MetaVoiceSpeakerEncoderConfig(
        mel_n_channels=int(state["lstm.weight_ih_l0"].shape[1]),
        hidden_size=int(state["lstm.weight_hh_l0"].shape[1]),
        embedding_size=int(state["linear.weight"].shape[0]),
        num_layers=layers,
    )
    names = [f"lstm.{kind}_l{i}" for i in range(layers) for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    names += ["linear.weight", "linear.bias"]
    missing = [n for n in names if n not in state]
    _expect(not missing, f"speaker_encoder: missing tensors {missing}")
    return config, {n: state[n] for n in names}


def _tokenizer_from(meta: dict, stage: str):
    from ...processing.metavoice.text import MetaVoiceTokenizer

    data = meta.get("tokenizer")
    _expect(isinstance(data, dict), f"{stage}: the checkpoint carries no BPE table (meta['tokenizer'])")
    return MetaVoiceTokenizer.from_dict(data)


def write_converted_metavoice(
    src: Path, out: Path, codec: str | os.PathLike | None = None, trust_pickle: bool | None = None
) -> None:
    """Write the converted folder into the existing folder ``out`` (see the module docstring)."""
    from ...configuration.metavoice import MetaVoiceConfig
    from ...processing.metavoice.processor import MetaVoiceProcessor

    src = Path(src)
    fs_state, fs_args, fs_meta = _read_stage(src, "first_stage", trust_pickle)
    ss_state, ss_args, ss_meta = _read_stage(src, "second_stage", trust_pickle)
    se_state, _, _ = _read_stage(src, "speaker_encoder", trust_pickle)
    fs_config, fs_weights = convert_first_stage(fs_state, fs_args, fs_meta)
    ss_config, ss_weights = convert_second_stage(ss_state, ss_args, ss_meta)
    se_config, se_weights = convert_speaker_encoder(se_state)
    tokenizer = _tokenizer_from(fs_meta, "first_stage")
    if "tokenizer" in ss_meta:
        other = _tokenizer_from(ss_meta, "second_stage")
        _expect(other.mergeable_ranks == tokenizer.mergeable_ranks, "the two stages carry different BPE tables")
    state = {f"first_stage.{k}": v for k, v in fs_weights.items()}
    state.update({f"second_stage.{k}": v for k, v in ss_weights.items()})
    state.update({f"speaker_encoder.{k}": v for k, v in se_weights.items()})
    codec_config = None
    if codec is not None:
        from transformers import EncodecModel

        codec_model = EncodecModel.from_pretrained(str(codec))
        cc = codec_model.config
        _expect(
            cc.codebook_size == fs_config.codebook_size,
            f"codec codebook size {cc.codebook_size} differs from the model's {fs_config.codebook_size}",
        )
        _expect(
            int(cc.sampling_rate) == 24000,
            f"MetaVoice codes are EnCodec 24 kHz codes, the codec runs at {cc.sampling_rate} Hz",
        )
        codec_config = cc.to_dict()
        state.update({f"codec.{k}": v.detach().clone() for k, v in codec_model.state_dict().items()})
    config = MetaVoiceConfig(
        first_stage_config=fs_config,
        second_stage_config=ss_config,
        speaker_encoder_config=se_config,
        codec_config=codec_config,
    )
    config.architectures = ["MetaVoiceForTextToSpeech"]
    config.save_pretrained(out)
    save_sharded_safetensors({k: v.contiguous() for k, v in state.items()}, out)
    MetaVoiceProcessor.from_model_config(config, tokenizer).save_pretrained(out)


def convert_metavoice(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    codec: str | os.PathLike | None = None,
    overwrite: bool = False,
    trust_pickle: bool | None = None,
) -> Path:
    """Convert the MetaVoice checkpoint folder ``src`` into ``dst`` (atomic); ``codec`` bundles an EnCodec folder."""
    src, dst = Path(src), Path(dst)
    if not is_metavoice_folder(src):
        raise FileNotFoundError(
            f"{src} is not a MetaVoice checkpoint folder (needs first_stage.pt, second_stage.pt, speaker_encoder.pt)"
        )
    if dst.exists() and same_folder(src, dst):
        raise ValueError("the destination must differ from the source folder (the source is never modified)")
    with atomic_output_dir(dst, overwrite=overwrite) as out:
        write_converted_metavoice(src, out, codec=codec, trust_pickle=trust_pickle)
    return dst
