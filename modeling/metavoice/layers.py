"""Building blocks shared by both MetaVoice stages: attention through transformers' attention functions, the
decoder block (pre-norm, Llama-style) and the attention mask of a left-padded causal batch."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.models.llama.modeling_llama import LlamaMLP, LlamaRMSNorm, eager_attention_forward


class MetaVoiceAttention(nn.Module):
    """Multi-head attention without positional rotation (positions are learned embeddings) and without biases.

    The original stores one fused ``c_attn`` (Q | K | V); the converter splits it into ``q/k/v_proj``.
    """

    def __init__(self, config, layer_idx: int, is_causal: bool):
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx
        self.is_causal = is_causal
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.num_key_value_groups = 1
        self.scaling = self.head_dim**-0.5
        self.attention_dropout = config.attention_dropout
        size = config.hidden_size
        self.q_proj = nn.Linear(size, size, bias=False)
        self.k_proj = nn.Linear(size, size, bias=False)
        self.v_proj = nn.Linear(size, size, bias=False)
        self.o_proj = nn.Linear(size, size, bias=False)

    def forward(self, hidden_states, attention_mask=None, cache=None, cache_position=None):
        batch, length, _ = hidden_states.shape
        shape = (batch, length, self.num_heads, self.head_dim)
        query = self.q_proj(hidden_states).view(shape).transpose(1, 2)
        key = self.k_proj(hidden_states).view(shape).transpose(1, 2)
        value = self.v_proj(hidden_states).view(shape).transpose(1, 2)
        if cache is not None:
            key, value = cache.update(key, value, self.layer_idx, {"cache_position": cache_position})
        if callable(attention_mask):  # built once per forward, for the key length the cache gives
            attention_mask = attention_mask(key.shape[-2])
        implementation = self.config._attn_implementation or "eager"
        attention = eager_attention_forward if implementation == "eager" else ALL_ATTENTION_FUNCTIONS[implementation]
        output, _ = attention(
            self,
            query,
            key,
            value,
            attention_mask,
            scaling=self.scaling,
            dropout=self.attention_dropout if self.training else 0.0,
        )
        return self.o_proj(output.reshape(batch, length, -1).contiguous())


class MetaVoiceGeluMLP(nn.Module):
    """Second-stage MLP: ``c_proj(gelu(c_fc(x)))`` with the exact (erf) GELU, no biases."""

    def __init__(self, config):
        super().__init__()
        self.fc_in = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.fc_out = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)

    def forward(self, x):
        return self.fc_out(F.gelu(self.fc_in(x)))


class MetaVoiceLayerNorm(nn.Module):
    """LayerNorm with a weight and no bias (the original's ``bias=False`` LayerNorm)."""

    def __init__(self, hidden_size: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.eps = eps

    def forward(self, x):
        return F.layer_norm(x, self.weight.shape, self.weight, None, self.eps)


class MetaVoiceDecoderLayer(nn.Module):
    """``x + attn(norm1(x))`` then ``x + mlp(norm2(x))``."""

    def __init__(self, config, layer_idx: int, *, causal: bool):
        super().__init__()
        if causal:  # first stage: RMSNorm + SwiGLU
            self.input_layernorm = LlamaRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
            self.post_attention_layernorm = LlamaRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
            self.mlp = LlamaMLP(config)
        else:  # second stage: LayerNorm + GELU
            self.input_layernorm = MetaVoiceLayerNorm(config.hidden_size, config.layer_norm_eps)
            self.post_attention_layernorm = MetaVoiceLayerNorm(config.hidden_size, config.layer_norm_eps)
            self.mlp = MetaVoiceGeluMLP(config)
        self.self_attn = MetaVoiceAttention(config, layer_idx, is_causal=causal)

    def forward(self, hidden_states, attention_mask=None, cache=None, cache_position=None):
        hidden_states = hidden_states + self.self_attn(
            self.input_layernorm(hidden_states), attention_mask, cache=cache, cache_position=cache_position
        )
        return hidden_states + self.mlp(self.post_attention_layernorm(hidden_states))


def causal_padding_mask(
    attention_mask: torch.Tensor | None, query_positions: torch.Tensor, key_length: int, dtype: torch.dtype
) -> torch.Tensor:
    """Additive mask ``[B|1, 1, T, key_length]`` for queries at cache slots ``query_positions [T]``.

    A query sees the keys at slots ``<=`` its own that ``attention_mask [B, S]`` (slots of the cached and the new
    tokens; shorter than ``key_length`` for a static cache) marks valid. Every query also sees itself, so the rows of
    left padding stay finite (they never influence a valid row: valid queries do not see padded keys).
    """
    slots = torch.arange(key_length, device=query_positions.device)
    allowed = slots[None, :] <= query_positions[:, None]  # [T, K]
    if attention_mask is not None:
        valid = attention_mask.to(device=slots.device, dtype=torch.bool)
        if valid.shape[1] < key_length:
            valid = F.pad(valid, (0, key_length - valid.shape[1]), value=False)
        allowed = allowed[None] & valid[:, None, :key_length]
    else:
        allowed = allowed[None]
    allowed = allowed | (slots[None, :] == query_positions[:, None])[None]
    mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    return mask.masked_fill(~allowed, torch.finfo(dtype).min)[:, None]
