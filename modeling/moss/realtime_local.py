"""The local (depth) transformer of MOSS-TTS-Realtime: 16 codes of one frame, codebook by codebook.

Local position 0 is the backbone's final hidden state of a row; position ``j >= 1`` is the local embedding
``embed_tokens[j - 1]`` of the code chosen for codebook ``j - 1``; the head ``lm_heads[j]`` (kept on the model) reads
the output at position ``j`` and predicts codebook ``j``. The layers are Qwen3 decoder layers (pre-norm RMSNorm,
per-head q/k RMSNorm, GQA, SwiGLU from transformers' Qwen3 blocks) with rotary embeddings over the positions
``0..n_vq-1`` of the frame, and a final RMSNorm.

Generation decodes the positions one at a time with :class:`LocalKVCache` (preallocated, Python-int positions, so the
per-frame loop has static shapes and no host synchronisation); training runs the 16 positions at once with a causal
mask. Both give the same logits (up to float rounding).
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
from torch import nn
from torch.nn import functional as F
from transformers import Qwen3Config
from transformers.models.qwen3.modeling_qwen3 import Qwen3MLP, Qwen3RMSNorm

__all__ = ["LocalKVCache", "RealtimeLocalTransformer", "rope_inverse_frequencies"]


class LocalKVCache:
    """Keys/values of every local layer for one frame: ``[batch, kv_heads, positions, head_dim]``, written at
    Python-int positions (static shapes; a new frame overwrites from position 0)."""

    def __init__(self, num_layers: int, batch: int, kv_heads: int, positions: int, head_dim: int, dtype, device):
        shape = (batch, kv_heads, positions, head_dim)
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(num_layers)]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(num_layers)]
        self.positions = positions
        for tensor in self.keys + self.values:
            # fixed addresses let CUDA graphs replay the writes (as transformers' StaticCache does)
            if hasattr(torch, "_dynamo") and hasattr(torch._dynamo, "mark_static_address"):
                torch._dynamo.mark_static_address(tensor)

    def update(self, layer: int, start: int, key: torch.Tensor, value: torch.Tensor):
        end = start + key.shape[2]
        if end > self.positions:
            raise ValueError(f"the local cache holds {self.positions} positions, asked to write up to {end}")
        self.keys[layer][:, :, start:end] = key
        self.values[layer][:, :, start:end] = value
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]


def rope_inverse_frequencies(config: Qwen3Config) -> tuple[torch.Tensor, float]:
    """``(inv_freq [head_dim / 2], position_scale)`` of the local RoPE: ``default`` or ``linear`` (positions divided
    by ``factor``; factor 1 is plain RoPE)."""
    params = dict(getattr(config, "rope_parameters", None) or {})
    rope_type = params.get("rope_type", "default")
    theta = float(params.get("rope_theta", getattr(config, "rope_theta", 10000.0)))
    if rope_type not in ("default", "linear"):
        raise ValueError(f"the local transformer supports rope_type 'default' or 'linear', got {rope_type!r}")
    factor = float(params.get("factor", 1.0)) if rope_type == "linear" else 1.0
    head_dim = config.head_dim or config.hidden_size // config.num_attention_heads
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    return inv_freq, 1.0 / factor


def _rms_norm(norm: Qwen3RMSNorm, x: torch.Tensor) -> torch.Tensor:
    """Qwen3RMSNorm's math (float32 statistics) as one fused call: the local loop runs 16 x layers of these per
    frame, so per-op overhead matters."""
    out = F.rms_norm(x.float(), (x.shape[-1],), eps=norm.variance_epsilon).to(x.dtype)
    return norm.weight * out


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class RealtimeLocalAttention(nn.Module):
    """Qwen3 attention (q/k RMSNorm per head, RoPE, GQA) over the local positions of one frame."""

    def __init__(self, config: Qwen3Config, layer_idx: int):
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = config.num_key_value_heads
        self.head_dim = config.head_dim or config.hidden_size // config.num_attention_heads
        self.scaling = self.head_dim**-0.5
        bias = config.attention_bias
        self.q_proj = nn.Linear(config.hidden_size, self.num_heads * self.head_dim, bias=bias)
        self.k_proj = nn.Linear(config.hidden_size, self.num_kv_heads * self.head_dim, bias=bias)
        self.v_proj = nn.Linear(config.hidden_size, self.num_kv_heads * self.head_dim, bias=bias)
        self.o_proj = nn.Linear(self.num_heads * self.head_dim, config.hidden_size, bias=bias)
        self.q_norm = Qwen3RMSNorm(self.head_dim, eps=config.rms_norm_eps)
        self.k_norm = Qwen3RMSNorm(self.head_dim, eps=config.rms_norm_eps)

    def forward(self, hidden_states, cos, sin, cache: LocalKVCache | None = None, start: int = 0):
        batch, q_len, _ = hidden_states.shape
        shape = (batch, q_len, -1, self.head_dim)
        query = _rms_norm(self.q_norm, self.q_proj(hidden_states).view(shape)).transpose(1, 2)
        key = _rms_norm(self.k_norm, self.k_proj(hidden_states).view(shape)).transpose(1, 2)
        value = self.v_proj(hidden_states).view(shape).transpose(1, 2)
        query = query * cos + _rotate_half(query) * sin
        key = key * cos + _rotate_half(key) * sin
        if cache is not None:
            key, value = cache.update(self.layer_idx, start, key, value)
        elif start != 0:
            raise ValueError("start > 0 needs a LocalKVCache holding the earlier positions")
        groups = self.num_heads // self.num_kv_heads
        key = key.repeat_interleave(groups, dim=1)
        value = value.repeat_interleave(groups, dim=1)
        mask = None
        if q_len > 1:  # causal inside the new positions; a single query sees every cached key
            q_pos = torch.arange(start, start + q_len, device=hidden_states.device)[:, None]
            mask = torch.arange(key.shape[2], device=hidden_states.device)[None, :] <= q_pos
        if self.config._attn_implementation == "eager":
            weights = torch.matmul(query, key.transpose(2, 3)) * self.scaling
            if mask is not None:
                weights = weights.masked_fill(~mask, torch.finfo(weights.dtype).min)
            weights = F.softmax(weights, dim=-1, dtype=torch.float32).to(query.dtype)
            output = torch.matmul(weights, value)
        else:  # sdpa (also when the backbone runs flash/flex attention: 16 positions, masked)
            output = F.scaled_dot_product_attention(query, key, value, attn_mask=mask, scale=self.scaling)
        return self.o_proj(output.transpose(1, 2).reshape(batch, q_len, -1))


class RealtimeLocalDecoderLayer(nn.Module):
    def __init__(self, config: Qwen3Config, layer_idx: int):
        super().__init__()
        self.self_attn = RealtimeLocalAttention(config, layer_idx)
        self.mlp = Qwen3MLP(
            SimpleNamespace(
                hidden_size=config.hidden_size, intermediate_size=config.intermediate_size, hidden_act=config.hidden_act
            )
        )
        self.input_layernorm = Qwen3RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.post_attention_layernorm = Qwen3RMSNorm(config.hidden_size, eps=config.rms_norm_eps)

    def forward(self, hidden_states, cos, sin, cache=None, start: int = 0):
        hidden_states = hidden_states + self.self_attn(_rms_norm(self.input_layernorm, hidden_states), cos, sin, cache, start)
        return hidden_states + self.mlp(_rms_norm(self.post_attention_layernorm, hidden_states))


class RealtimeLocalTransformer(nn.Module):
    """Code embeddings (``embed_tokens.{0..n_vq-2}``), Qwen3-style layers and final norm of the local transformer.

    Keys match the original ``local_transformer.model.*`` tensors.
    """

    def __init__(self, config: Qwen3Config, n_vq: int, audio_vocab_size: int):
        super().__init__()
        self.config = config
        self.n_vq = n_vq
        # No padding_idx: the released local embeddings have a trained (non-zero) pad row that must stay as stored.
        self.embed_tokens = nn.ModuleList(nn.Embedding(audio_vocab_size, config.hidden_size) for _ in range(n_vq - 1))
        self.layers = nn.ModuleList(RealtimeLocalDecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = Qwen3RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self._rope: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def rope_tables(self, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """``cos, sin`` [n_vq, head_dim] of the frame positions (computed in float32, cast like Qwen3's rotary)."""
        key = (torch.device(device), dtype)
        if key not in self._rope:
            with torch.inference_mode(False), torch.no_grad():  # plain tensors: usable with autograd later
                self._rope[key] = self._rope_tables(device, dtype)
        return self._rope[key]

    def _rope_tables(self, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
        if True:
            inv_freq, scale = rope_inverse_frequencies(self.config)
            positions = torch.arange(self.n_vq, dtype=torch.float32) * scale
            freqs = torch.outer(positions, inv_freq)
            emb = torch.cat((freqs, freqs), dim=-1)
            return emb.cos().to(device=device, dtype=dtype), emb.sin().to(device=device, dtype=dtype)

    def new_cache(self, batch: int, dtype, device) -> LocalKVCache:
        attn = self.layers[0].self_attn
        return LocalKVCache(len(self.layers), batch, attn.num_kv_heads, self.n_vq, attn.head_dim, dtype, device)

    def forward(self, inputs_embeds: torch.Tensor, cache: LocalKVCache | None = None, start: int = 0) -> torch.Tensor:
        """``inputs_embeds`` [B, q, H] at local positions ``start..start+q-1`` → normed outputs [B, q, H]."""
        cos, sin = self.rope_tables(inputs_embeds.device, inputs_embeds.dtype)
        q_len = inputs_embeds.shape[1]
        cos, sin = cos[start : start + q_len], sin[start : start + q_len]
        hidden_states = inputs_embeds
        for layer in self.layers:
            hidden_states = layer(hidden_states, cos, sin, cache, start)
        return _rms_norm(self.norm, hidden_states)
