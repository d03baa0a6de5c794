"""The position-free causal "local" (depth) transformer of the Local generator, with its own static KV cache.

Inside one frame the local transformer runs over at most ``1 + n_vq`` positions: position 0 is the (adapted)
backbone latent, position ``k + 1`` the (adapted) embedding of the token chosen for channel ``k``. It is a stack of
Qwen3 decoder layers whose attention has **no positional encoding at all** (no RoPE); causality is the only order
signal, so it must be causal for every attention backend. (The original code relied on ``is_causal=True``, which
transformers' eager attention ignores, making its eager path bidirectional by accident; ours is causal for eager and
sdpa alike.)

Because there are no positions, caching keys/values is exact: decoding a frame channel by channel with
:class:`LocalKVCache` gives the same result as recomputing the whole prefix at every channel (what the original does,
O(N^2) per frame). The cache is a fixed set of preallocated tensors written at Python-int positions, so the per-frame
loop has static shapes and no host synchronisation (CUDA-graph / ``torch.compile(fullgraph=True)`` friendly).
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
from torch import nn
from torch.nn import functional as F
from transformers.models.qwen3.modeling_qwen3 import Qwen3MLP, Qwen3RMSNorm

from ...configuration.moss.local import CodecTTSLocalConfig


class LocalKVCache:
    """Preallocated keys/values of every local layer for one frame: ``[batch, kv_heads, max_positions, head_dim]``.

    Positions are plain Python ints (the channel index inside the frame), so every write and read has a static shape.
    A new frame simply overwrites from position 0; nothing needs clearing because reads only cover written positions.
    """

    def __init__(
        self,
        num_layers: int,
        batch_size: int,
        num_kv_heads: int,
        max_positions: int,
        head_dim: int,
        dtype: torch.dtype,
        device: torch.device | str,
    ):
        shape = (batch_size, num_kv_heads, max_positions, head_dim)
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(num_layers)]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(num_layers)]
        self.max_positions = max_positions
        for tensor in self.keys + self.values:
            # Fixed addresses let CUDA graphs replay writes into the same memory (as transformers' StaticCache does).
            if hasattr(torch, "_dynamo") and hasattr(torch._dynamo, "mark_static_address"):
                torch._dynamo.mark_static_address(tensor)

    @property
    def batch_size(self) -> int:
        return self.keys[0].shape[0]

    def update(
        self, layer_idx: int, start: int, key: torch.Tensor, value: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write ``key``/``value`` ([B, kv, q, hd]) at positions ``start..start+q-1``; return all keys/values so far."""
        end = start + key.shape[2]
        if end > self.max_positions:
            raise ValueError(f"local cache holds {self.max_positions} positions, asked to write up to {end}")
        self.keys[layer_idx][:, :, start:end] = key
        self.values[layer_idx][:, :, start:end] = value
        return self.keys[layer_idx][:, :, :end], self.values[layer_idx][:, :, :end]


class CodecTTSLocalAttention(nn.Module):
    """Qwen3 attention (q/k RMSNorm per head, GQA, scale ``head_dim**-0.5``) without any positional encoding."""

    def __init__(self, config: CodecTTSLocalConfig, layer_idx: int):
        super().__init__()
        text = config.text_config
        self.config = config
        self.layer_idx = layer_idx
        self.num_heads = text.num_attention_heads
        self.num_kv_heads = text.num_key_value_heads
        self.head_dim = config.local_head_dim
        self.scaling = self.head_dim**-0.5
        bias = text.attention_bias
        width = config.local_hidden_size
        self.q_proj = nn.Linear(width, self.num_heads * self.head_dim, bias=bias)
        self.k_proj = nn.Linear(width, self.num_kv_heads * self.head_dim, bias=bias)
        self.v_proj = nn.Linear(width, self.num_kv_heads * self.head_dim, bias=bias)
        self.o_proj = nn.Linear(self.num_heads * self.head_dim, width, bias=bias)
        self.q_norm = Qwen3RMSNorm(self.head_dim, eps=text.rms_norm_eps)
        self.k_norm = Qwen3RMSNorm(self.head_dim, eps=text.rms_norm_eps)

    def forward(
        self, hidden_states: torch.Tensor, cache: LocalKVCache | None = None, start: int = 0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``hidden_states`` [B, q, D] at local positions ``start..start+q-1``; returns (output [B, q, D], weights)."""
        batch, q_len, _ = hidden_states.shape
        query = self.q_norm(self.q_proj(hidden_states).view(batch, q_len, -1, self.head_dim)).transpose(1, 2)
        key = self.k_norm(self.k_proj(hidden_states).view(batch, q_len, -1, self.head_dim)).transpose(1, 2)
        value = self.v_proj(hidden_states).view(batch, q_len, -1, self.head_dim).transpose(1, 2)
        if cache is not None:
            key, value = cache.update(self.layer_idx, start, key, value)
        elif start != 0:
            raise ValueError("start > 0 needs a LocalKVCache holding the earlier positions")
        groups = self.num_heads // self.num_kv_heads
        eager = self.config._attn_implementation == "eager"
        if eager or groups == 1:
            key = key.repeat_interleave(groups, dim=1)
            value = value.repeat_interleave(groups, dim=1)

        # Query i (absolute position start+i) sees keys 0..start+i. A single query sees every cached key: no mask.
        kv_len = key.shape[2]
        mask = None
        if q_len > 1:
            q_pos = torch.arange(start, start + q_len, device=hidden_states.device)[:, None]
            mask = torch.arange(kv_len, device=hidden_states.device)[None, :] <= q_pos  # [q, kv] bool

        if eager:
            weights = torch.matmul(query, key.transpose(2, 3)) * self.scaling
            if mask is not None:
                weights = weights.masked_fill(~mask, torch.finfo(weights.dtype).min)
            weights = F.softmax(weights, dim=-1, dtype=torch.float32).to(query.dtype)
            output = torch.matmul(weights, value)
        else:
            # sdpa (also used when the backbone runs flash/flex attention: the local stack is tiny and masked).
            weights = None
            # grouped heads read their shared keys/values in place (no repeat_interleave copies per local step)
            output = F.scaled_dot_product_attention(
                query, key, value, attn_mask=mask, scale=self.scaling, enable_gqa=groups > 1
            )
        output = output.transpose(1, 2).reshape(batch, q_len, -1)
        return self.o_proj(output), weights


class CodecTTSLocalDecoderLayer(nn.Module):
    """Pre-norm Qwen3 decoder layer around :class:`CodecTTSLocalAttention`."""

    def __init__(self, config: CodecTTSLocalConfig, layer_idx: int):
        super().__init__()
        width, eps = config.local_hidden_size, config.text_config.rms_norm_eps
        self.self_attn = CodecTTSLocalAttention(config, layer_idx)
        # Qwen3MLP only reads these three fields; the local sizes replace the backbone's (as in the original).
        mlp_sizes = SimpleNamespace(
            hidden_size=width, intermediate_size=config.local_intermediate_size, hidden_act=config.text_config.hidden_act
        )
        self.mlp = Qwen3MLP(mlp_sizes)
        self.input_layernorm = Qwen3RMSNorm(width, eps=eps)
        self.post_attention_layernorm = Qwen3RMSNorm(width, eps=eps)

    def forward(self, hidden_states: torch.Tensor, cache: LocalKVCache | None = None, start: int = 0) -> torch.Tensor:
        attn_out, _ = self.self_attn(self.input_layernorm(hidden_states), cache=cache, start=start)
        hidden_states = hidden_states + attn_out
        return hidden_states + self.mlp(self.post_attention_layernorm(hidden_states))


class CodecTTSLocalTransformer(nn.Module):
    """Stack of :class:`CodecTTSLocalDecoderLayer` + final RMSNorm over the local positions of one frame.

    Keys ``layers.{i}.*`` and ``norm.weight`` match the original ``local_transformer.*`` tensors.
    """

    def __init__(self, config: CodecTTSLocalConfig):
        super().__init__()
        self.config = config
        self.layers = nn.ModuleList(CodecTTSLocalDecoderLayer(config, i) for i in range(config.local_num_layers))
        self.norm = Qwen3RMSNorm(config.local_hidden_size, eps=config.text_config.rms_norm_eps)

    def new_cache(self, batch_size: int, dtype: torch.dtype, device: torch.device | str) -> LocalKVCache:
        """A cache for one frame (``1 + n_vq`` positions) of ``batch_size`` sequences."""
        attn = self.layers[0].self_attn
        return LocalKVCache(
            len(self.layers), batch_size, attn.num_kv_heads, self.config.num_channels, attn.head_dim, dtype, device
        )

    def forward(self, inputs_embeds: torch.Tensor, cache: LocalKVCache | None = None, start: int = 0) -> torch.Tensor:
        """Args:
            inputs_embeds: [B, q, local_hidden_size] at local positions ``start..start+q-1``.
            cache: keys/values of positions ``< start`` (and receives the new ones); ``None`` for a full pass.
        Returns:
            [B, q, local_hidden_size], after the final norm.
        """
        hidden_states = inputs_embeds
        for layer in self.layers:
            hidden_states = layer(hidden_states, cache=cache, start=start)
        return self.norm(hidden_states)


__all__ = ["CodecTTSLocalTransformer", "LocalKVCache"]
