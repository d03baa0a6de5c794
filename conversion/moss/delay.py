"""Convert an original MOSS-TTS Delay checkpoint (``model_type moss_tts_delay``) to our layout.

Original keys -> ours (``N = n_vq``, ``A = audio_vocab_size + 1``)::

    language_model.X           -> model.X                      (Qwen3Model, unchanged)
    emb_ext.{j}.weight  [A, H] -> audio_embed_tokens.weight    [N*A, H]   (stacked, j = 0..N-1)
    lm_heads.0.weight   [V, H] -> lm_head.weight
    lm_heads.{k}.weight [A, H] -> audio_lm_head.weight         [N*A, H]   (stacked, k = 1..N)

Every tensor is checked against the shapes implied by the config before anything is written; a mismatch raises
`CheckpointMismatchError` naming the tensors. Dtypes are kept as stored (bf16 for the releases).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from ...configuration.moss.delay import CodecTTSDelayConfig
from ...modeling.moss.generation_delay import CodecTTSDelayGenerationMixin
from ..io import DEFAULT_MAX_SHARD_BYTES, check_state_dict, load_state_dict, read_json, write_converted_model

__all__ = [
    "convert_delay_state_dict",
    "expected_original_delay_shapes",
    "load_converted_delay",
    "preset_for_original_config",
    "write_converted_delay",
]


def expected_original_delay_shapes(config: CodecTTSDelayConfig) -> dict[str, tuple[int, ...]]:
    """Shapes of every tensor of an original Delay checkpoint with this config."""
    text = config.text_config
    hidden, head_dim = text.hidden_size, text.head_dim or text.hidden_size // text.num_attention_heads
    q_rows, kv_rows = text.num_attention_heads * head_dim, text.num_key_value_heads * head_dim
    shapes: dict[str, tuple[int, ...]] = {
        "language_model.embed_tokens.weight": (text.vocab_size, hidden),
        "language_model.norm.weight": (hidden,),
    }
    for i in range(text.num_hidden_layers):
        p = f"language_model.layers.{i}."
        shapes.update(
            {
                p + "input_layernorm.weight": (hidden,),
                p + "post_attention_layernorm.weight": (hidden,),
                p + "self_attn.q_proj.weight": (q_rows, hidden),
                p + "self_attn.k_proj.weight": (kv_rows, hidden),
                p + "self_attn.v_proj.weight": (kv_rows, hidden),
                p + "self_attn.o_proj.weight": (hidden, q_rows),
                p + "self_attn.q_norm.weight": (head_dim,),
                p + "self_attn.k_norm.weight": (head_dim,),
                p + "mlp.gate_proj.weight": (text.intermediate_size, hidden),
                p + "mlp.up_proj.weight": (text.intermediate_size, hidden),
                p + "mlp.down_proj.weight": (hidden, text.intermediate_size),
            }
        )
        if text.attention_bias:
            shapes.update(
                {p + f"self_attn.{n}_proj.bias": (r,) for n, r in (("q", q_rows), ("k", kv_rows), ("v", kv_rows))}
            )
            shapes[p + "self_attn.o_proj.bias"] = (hidden,)
    for j in range(config.n_vq):
        shapes[f"emb_ext.{j}.weight"] = (config.audio_num_embeddings, hidden)
        shapes[f"lm_heads.{j + 1}.weight"] = (config.audio_num_embeddings, hidden)
    shapes["lm_heads.0.weight"] = (text.vocab_size, hidden)
    return shapes


def convert_delay_state_dict(state: dict[str, torch.Tensor], config: CodecTTSDelayConfig) -> dict[str, torch.Tensor]:
    """Original Delay tensors -> our tensors (validated first)."""
    check_state_dict(state, expected_original_delay_shapes(config), what="MOSS-TTS Delay checkpoint")
    prefix = "language_model."
    out = {"model." + k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    n = config.n_vq
    out["audio_embed_tokens.weight"] = torch.cat([state[f"emb_ext.{j}.weight"] for j in range(n)], dim=0)
    out["audio_lm_head.weight"] = torch.cat([state[f"lm_heads.{k}.weight"] for k in range(1, n + 1)], dim=0)
    out["lm_head.weight"] = state["lm_heads.0.weight"]
    return out


def load_converted_delay(src: str | Path, **from_pretrained_kwargs):
    """Convert ``src`` and load it as a `CodecTTSDelayForConditionalGeneration` (through a temporary folder, so this
    is exactly what `from_pretrained` gives for the converted folder). Keyword arguments go to `from_pretrained`."""
    from ...modeling.moss.delay import CodecTTSDelayForConditionalGeneration

    with tempfile.TemporaryDirectory() as tmp:
        write_converted_delay(Path(src), Path(tmp))
        return CodecTTSDelayForConditionalGeneration.from_pretrained(tmp, **from_pretrained_kwargs)


def write_converted_delay(src: Path, out: Path, max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES) -> None:
    """Write our ``config.json``, ``generation_config.json`` and (sharded) safetensors for the original ``src``.

    The tensors are written as stored (no model is instantiated, so an 8B checkpoint needs ~1x its size in RAM).
    """
    src = Path(src)
    original = read_json(src / "config.json")
    config = CodecTTSDelayConfig.from_original_config(original)
    state = convert_delay_state_dict(load_state_dict(src), config)
    generation_config = CodecTTSDelayGenerationMixin.default_generation_config(
        config, preset=preset_for_original_config(original)
    )
    generation_config.max_new_tokens = 4096
    write_converted_model(
        out, config, state, "CodecTTSDelayForConditionalGeneration", generation_config, max_shard_bytes
    )


def preset_for_original_config(original: dict) -> str:
    """Best guess of the release a config belongs to (sampling presets differ; see `DELAY_GENERATION_PRESETS`).

    MOSS-TTSD is the only release with 16 codebooks and MOSS-VoiceGenerator the only one with `gen_token_id`;
    everything else gets the MOSS-TTS preset (MOSS-SoundEffect users pick `moss-sound-effect` themselves).
    """
    if original.get("n_vq") == 16:
        return "moss-ttsd"
    if "gen_token_id" in original:
        return "moss-voice-generator"
    return "moss-tts"
