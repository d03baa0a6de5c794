"""The MaskGCT generator network: a bidirectional Llama stack whose norms take their gain from the diffusion time.

One module serves every MaskGCT-style generator (T2S, S2A, and Metis on the same pieces):

* the diffusion time ``t`` in [0, 1] -> sinusoid -> MLP -> ``c_t`` [B, H];
* every RMSNorm is adaptive: ``rms(x) * (W c_t + b)``;
* conditioning is either a **prefix** (``conditioning="prefix"``: ``cond_mlp(prefix)`` is prepended and its
  positions are dropped from the output, T2S' phones) or **additive** (``conditioning="add"``: ``cond_mlp(cond)``
  is added position-wise, S2A's semantic tokens);
* attention has no causal mask (keys can be masked with ``attention_mask``); RoPE over the whole sequence.

Attention goes through transformers' attention interface (``config._attn_implementation``: "eager" or "sdpa").
Parameter names are those of the original ``diff_estimator`` (``layers.{i}.self_attn.q_proj`` ...).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.models.llama.modeling_llama import LlamaMLP


class SinusoidalTimestepEmbedding(nn.Module):
    """t [B] (unscaled, in [0, 1]) -> [sin(t f_k), cos(t f_k)] [B, dim], f_k = exp(-k ln(10000) / (dim/2 - 1))."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.dim // 2
        freq = torch.exp(torch.arange(half, device=t.device) * -(math.log(10000) / (half - 1)))
        emb = t[:, None] * freq[None, :] * 1.0
        return torch.cat((emb.sin(), emb.cos()), dim=-1)


class AdaptiveRMSNorm(nn.Module):
    """RMSNorm whose gain is ``to_weight(c_t)`` (per sample, broadcast over positions)."""

    def __init__(self, hidden_size: int, eps: float = 1e-6):
        super().__init__()
        self.to_weight = nn.Linear(hidden_size, hidden_size)
        self.to_weight.is_adaptive_gain = True  # initialised by its norm (W = 0, b = 1), not as a plain Linear
        self.variance_epsilon = eps

    def forward(self, hidden_states: torch.Tensor, time_embedding: torch.Tensor) -> torch.Tensor:
        dtype = hidden_states.dtype
        variance = hidden_states.to(torch.float32).pow(2).mean(-1, keepdim=True)
        hidden_states = hidden_states * torch.rsqrt(variance + self.variance_epsilon)
        weight = self.to_weight(time_embedding)
        if weight.dim() == 2:
            weight = weight.unsqueeze(1)
        return (weight * hidden_states).to(dtype)


def rotary_cos_sin(position_ids: torch.Tensor, head_dim: int, theta: float, dtype: torch.dtype):
    """Default (unscaled) RoPE tables [B, S, head_dim], computed in float32 like transformers' Llama."""
    inv_freq = 1.0 / (
        theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64, device=position_ids.device).float() / head_dim)
    )
    freqs = inv_freq[None, :, None].expand(position_ids.shape[0], -1, 1) @ position_ids[:, None, :].float()
    emb = torch.cat((freqs.transpose(1, 2),) * 2, dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


def eager_attention_forward(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    """Plain attention as the original computes it (scores divided by sqrt(head_dim), fp32 softmax)."""
    attn_weights = torch.matmul(query, key.transpose(2, 3)) / math.sqrt(module.head_dim)
    if attention_mask is not None:
        attn_weights = attn_weights + attention_mask
    attn_weights = nn.functional.softmax(attn_weights, dim=-1, dtype=torch.float32).to(query.dtype)
    attn_weights = nn.functional.dropout(attn_weights, p=dropout, training=module.training)
    attn_output = torch.matmul(attn_weights, value).transpose(1, 2).contiguous()
    return attn_output, attn_weights


class MaskGctAttention(nn.Module):
    """Multi-head self-attention without causal mask (q/k/v/o projections without bias, RoPE)."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.head_dim = config.hidden_size // config.num_heads
        self.num_heads = config.num_heads
        self.num_key_value_groups = 1
        self.scaling = self.head_dim**-0.5
        self.is_causal = False
        h = config.hidden_size
        self.q_proj = nn.Linear(h, h, bias=False)
        self.k_proj = nn.Linear(h, h, bias=False)
        self.v_proj = nn.Linear(h, h, bias=False)
        self.o_proj = nn.Linear(h, h, bias=False)

    def forward(self, hidden_states, cos, sin, attention_mask=None):
        bsz, length, _ = hidden_states.shape
        shape = (bsz, length, self.num_heads, self.head_dim)
        q = self.q_proj(hidden_states).view(shape).transpose(1, 2)
        k = self.k_proj(hidden_states).view(shape).transpose(1, 2)
        v = self.v_proj(hidden_states).view(shape).transpose(1, 2)
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        implementation = self.config._attn_implementation or "eager"
        attention: Callable = (
            eager_attention_forward if implementation == "eager" else ALL_ATTENTION_FUNCTIONS[implementation]
        )
        out, _ = attention(
            self,
            q,
            k,
            v,
            attention_mask,
            dropout=self.config.attention_dropout if self.training else 0.0,
            scaling=self.scaling,
            is_causal=False,
        )
        return self.o_proj(out.reshape(bsz, length, -1))


class MaskGctDecoderLayer(nn.Module):
    """Pre-norm Llama block with adaptive RMSNorms."""

    def __init__(self, config):
        super().__init__()
        self.self_attn = MaskGctAttention(config)
        self.mlp = LlamaMLP(config)
        self.input_layernorm = AdaptiveRMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_attention_layernorm = AdaptiveRMSNorm(config.hidden_size, config.rms_norm_eps)

    def forward(self, hidden_states, time_embedding, cos, sin, attention_mask=None):
        residual = hidden_states
        hidden_states = self.self_attn(self.input_layernorm(hidden_states, time_embedding), cos, sin, attention_mask)
        hidden_states = residual + hidden_states
        residual = hidden_states
        hidden_states = self.mlp(self.post_attention_layernorm(hidden_states, time_embedding))
        return residual + hidden_states


def _mlp(hidden_size: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(hidden_size, 4 * hidden_size), nn.SiLU(), nn.Linear(4 * hidden_size, hidden_size))


class MaskGctDiffusionTransformer(nn.Module):
    """Bidirectional adaptive-RMSNorm transformer (the original ``diff_estimator``).

    Args:
        config: a generator config (hidden_size, num_layers, num_heads, intermediate_size, rms_norm_eps,
            rope_theta, attention_dropout, ``_attn_implementation``).
        conditioning: "prefix" (T2S) or "add" (S2A).
    """

    def __init__(self, config, conditioning: str):
        super().__init__()
        if conditioning not in ("prefix", "add"):
            raise ValueError(f"conditioning must be 'prefix' or 'add', got {conditioning!r}")
        self.config = config
        self.conditioning = conditioning
        h = config.hidden_size
        self.layers = nn.ModuleList([MaskGctDecoderLayer(config) for _ in range(config.num_layers)])
        self.norm = AdaptiveRMSNorm(h, config.rms_norm_eps)
        self.diff_step_embedding = SinusoidalTimestepEmbedding(h)
        self.diff_step_mlp = _mlp(h)
        self.cond_mlp = _mlp(h)
        self.gradient_checkpointing = False

    def forward(
        self,
        inputs_embeds: torch.Tensor,
        timestep: torch.Tensor,
        cond: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """
        Args:
            inputs_embeds: token inputs [B, T, H].
            timestep: diffusion time [B] (float, 1 = everything masked).
            cond: "add": [B, T, H] added after ``cond_mlp``; "prefix": [B, P, H] prepended after ``cond_mlp``
                (None: no prefix).
            attention_mask: [B, S] with 1 for keys to attend to (S = T, or P + T with a prefix); None = all.
            position_ids: [B, S] RoPE positions (default 0..S-1).

        Returns:
            hidden states of the T token positions [B, T, H] (after the final adaptive norm).
        """
        time_embedding = self.diff_step_mlp(self.diff_step_embedding(timestep).to(inputs_embeds.dtype))
        num_prefix = 0
        x = inputs_embeds
        if self.conditioning == "add":
            if cond is None:
                raise ValueError("this estimator adds a condition position-wise: cond [B, T, H] is required")
            x = x + self.cond_mlp(cond)
        elif cond is not None:
            num_prefix = cond.shape[1]
            x = torch.cat([self.cond_mlp(cond), x], dim=1)
        bsz, length, _ = x.shape
        if attention_mask is not None and attention_mask.shape[-1] != length:
            raise ValueError(f"attention_mask covers {attention_mask.shape[-1]} positions, the sequence has {length}")
        mask4d = None
        if attention_mask is not None:
            # additive key mask [B, 1, 1, S] (0 or the dtype's min), broadcast over queries and heads
            inverted = 1.0 - attention_mask[:, None, None, :].to(x.dtype)
            mask4d = inverted.masked_fill(inverted.to(torch.bool), torch.finfo(x.dtype).min)
        if position_ids is None:
            position_ids = torch.arange(length, device=x.device)[None].expand(bsz, -1)
        cos, sin = rotary_cos_sin(
            position_ids, self.config.hidden_size // self.config.num_heads, self.config.rope_theta, x.dtype
        )
        for layer in self.layers:
            if self.gradient_checkpointing and self.training:
                x = torch.utils.checkpoint.checkpoint(layer, x, time_embedding, cos, sin, mask4d, use_reentrant=False)
            else:
                x = layer(x, time_embedding, cos, sin, mask4d)
        x = self.norm(x, time_embedding)
        return x[:, num_prefix:]
