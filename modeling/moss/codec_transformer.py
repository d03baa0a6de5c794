"""Building blocks of the audio tokenizer's encoder/decoder: patchify reshapes and causal sliding-window transformers.

All tensors are time-major ``(batch, steps, channels)``. Attention never materialises a ``steps x steps`` mask:
queries are processed in blocks that only see the keys inside their window (or flash-attention's native window on
GPU), so memory grows linearly with the input length.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .codec_streaming import CodecStreamingState

try:  # optional GPU kernel with a native sliding window
    from flash_attn import flash_attn_func as _flash_attn_func
except Exception:  # pragma: no cover - depends on the environment
    _flash_attn_func = None

# Queries per attention block on the chunked path: large enough to keep kernel calls few, small enough that a
# block's score matrix (block x (block + window)) stays small for long windows.
_MIN_QUERY_BLOCK = 128
_MAX_QUERY_BLOCK = 512


def sliding_window_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, window: int) -> torch.Tensor:
    """Causal attention where each query sees the last ``window`` keys, itself included.

    Args:
        query: ``(batch, heads, T, head_dim)``, the last ``T`` positions of the key sequence.
        key, value: ``(batch, heads, P + T, head_dim)``; the first ``P`` steps are cached context (streaming).
        window: number of visible keys per query (current one included).

    Returns:
        ``(batch, heads, T, head_dim)``. Memory is ``O(T * (block + window))``, never ``O(T^2)``.
    """
    num_queries, num_keys = query.shape[2], key.shape[2]
    past = num_keys - num_queries
    if _flash_attn_func is not None and query.is_cuda and query.dtype in (torch.float16, torch.bfloat16):
        # flash-attention aligns the causal diagonal bottom-right, i.e. query i sits at key position past + i.
        out = _flash_attn_func(
            query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2), causal=True, window_size=(window - 1, 0)
        )
        return out.transpose(1, 2)
    if past == 0 and num_queries <= window:
        return F.scaled_dot_product_attention(query, key, value, is_causal=True)

    block = min(max(window, _MIN_QUERY_BLOCK), _MAX_QUERY_BLOCK)
    outputs = []
    for start in range(0, num_queries, block):
        end = min(start + block, num_queries)
        key_start = max(0, past + start - window + 1)
        key_end = past + end
        query_pos = torch.arange(past + start, past + end, device=query.device)
        key_pos = torch.arange(key_start, key_end, device=query.device)
        distance = query_pos[:, None] - key_pos[None, :]
        mask = (distance >= 0) & (distance < window)
        outputs.append(
            F.scaled_dot_product_attention(
                query[:, :, start:end], key[:, :, key_start:key_end], value[:, :, key_start:key_end], attn_mask=mask
            )
        )
    return torch.cat(outputs, dim=2)


def rotary_angles(start: int, steps: int, head_dim: int, theta: float, device) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 ``cos``/``sin`` of shape ``(steps, head_dim / 2)`` for absolute positions ``start .. start + steps - 1``.

    Pair ``i`` rotates with frequency ``theta^(-2i / head_dim)``.
    """
    freqs = torch.exp(
        torch.arange(head_dim // 2, device=device, dtype=torch.float32) * (-math.log(theta) * 2 / head_dim)
    )
    positions = torch.arange(start, start + steps, device=device, dtype=torch.float32)
    angles = positions[:, None] * freqs[None, :]
    return torch.cos(angles), torch.sin(angles)


def apply_interleaved_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved pairs ``(x[2i], x[2i+1])`` of ``x`` ``(batch, heads, steps, head_dim)`` (GPT-J style).

    Computed in float32 and cast back to ``x.dtype``, as the original does.
    """
    pairs = x.float().unflatten(-1, (x.shape[-1] // 2, 2))
    real, imag = pairs[..., 0], pairs[..., 1]
    rotated = torch.stack([real * cos - imag * sin, real * sin + imag * cos], dim=-1)
    return rotated.flatten(-2).to(x.dtype)


class CodecPatchify(nn.Module):
    """Fold (encoder) or unfold (decoder) ``patch_size`` consecutive steps into channels; a pure reshape.

    Fold: ``out[b, t, c * h + j] = x[b, t * h + j, c]``; unfold is its exact inverse.
    """

    def __init__(self, patch_size: int, fold: bool):
        super().__init__()
        self.patch_size = patch_size
        self.fold = fold

    def forward(self, x: torch.Tensor, state: CodecStreamingState | None = None, index: int = 0) -> torch.Tensor:
        batch, steps, channels = x.shape
        h = self.patch_size
        if self.fold:
            return x.view(batch, steps // h, h, channels).transpose(2, 3).reshape(batch, steps // h, channels * h)
        return x.view(batch, steps, channels // h, h).transpose(2, 3).reshape(batch, steps * h, channels // h)

    def extra_repr(self) -> str:
        return f"patch_size={self.patch_size}, fold={self.fold}"


class CodecLayerScale(nn.Module):
    """Per-channel learned scale of a residual branch."""

    def __init__(self, hidden_size: int, initial_scale: float):
        super().__init__()
        self.scale = nn.Parameter(torch.full((hidden_size,), initial_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class CodecAttention(nn.Module):
    """Multi-head self-attention with a fused bias-free QKV projection, interleaved RoPE and a sliding window."""

    def __init__(self, hidden_size: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        # Rows: [Q; K; V], each head-major (head h = rows h*head_dim .. (h+1)*head_dim - 1).
        self.qkv_proj = nn.Linear(hidden_size, 3 * hidden_size, bias=False)
        self.o_proj = nn.Linear(hidden_size, hidden_size, bias=False)

    def forward(
        self, x: torch.Tensor, window: int, rope: tuple[torch.Tensor, torch.Tensor], cache=None
    ) -> torch.Tensor:
        batch, steps, hidden = x.shape
        qkv = self.qkv_proj(x).view(batch, steps, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        query, key, value = qkv.unbind(0)  # (batch, heads, steps, head_dim)
        query = apply_interleaved_rope(query, *rope)
        key = apply_interleaved_rope(key, *rope)
        if cache is not None:
            key, value = cache.update(key, value, window)
        out = sliding_window_attention(query, key, value, window)
        return self.o_proj(out.transpose(1, 2).reshape(batch, steps, hidden))


class CodecMLP(nn.Module):
    def __init__(self, hidden_size: int, intermediate_size: int):
        super().__init__()
        self.fc1 = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.fc2 = nn.Linear(intermediate_size, hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))  # exact (erf) GELU


class CodecTransformerLayer(nn.Module):
    """Pre-LayerNorm block: ``x + s1 * attn(ln1(x))`` then ``x + s2 * mlp(ln2(x))``."""

    def __init__(self, spec: dict, layer_norm_eps: float, layer_scale_initial_scale: float):
        super().__init__()
        hidden = spec["hidden_size"]
        self.input_layernorm = nn.LayerNorm(hidden, eps=layer_norm_eps)
        self.self_attn = CodecAttention(hidden, spec["num_attention_heads"])
        self.post_attention_layernorm = nn.LayerNorm(hidden, eps=layer_norm_eps)
        self.mlp = CodecMLP(hidden, spec["intermediate_size"])
        if spec["layer_scale"]:
            self.self_attn_layer_scale = CodecLayerScale(hidden, layer_scale_initial_scale)
            self.mlp_layer_scale = CodecLayerScale(hidden, layer_scale_initial_scale)
        else:
            self.self_attn_layer_scale = self.mlp_layer_scale = nn.Identity()

    def forward(
        self, x: torch.Tensor, window: int, rope: tuple[torch.Tensor, torch.Tensor], cache=None
    ) -> torch.Tensor:
        x = x + self.self_attn_layer_scale(self.self_attn(self.input_layernorm(x), window, rope, cache))
        return x + self.mlp_layer_scale(self.mlp(self.post_attention_layernorm(x)))


class CodecTransformerStage(nn.Module):
    """``input_proj`` -> causal transformer layers (no final norm) -> ``output_proj``.

    The projections are bias-free linears and are absent when the size already matches ``hidden_size``.
    ``window`` is the number of steps each position attends to (current one included).
    """

    def __init__(self, spec: dict, window: int, layer_norm_eps: float, layer_scale_initial_scale: float):
        super().__init__()
        hidden = spec["hidden_size"]
        self.window = window
        self.head_dim = hidden // spec["num_attention_heads"]
        self.rope_theta = spec["rope_theta"]
        self.input_proj = nn.Linear(spec["input_size"], hidden, bias=False) if spec["input_size"] != hidden else None
        self.layers = nn.ModuleList(
            CodecTransformerLayer(spec, layer_norm_eps, layer_scale_initial_scale) for _ in range(spec["num_layers"])
        )
        self.output_proj = nn.Linear(hidden, spec["output_size"], bias=False) if spec["output_size"] != hidden else None

    def forward(self, x: torch.Tensor, state: CodecStreamingState | None = None, index: int = 0) -> torch.Tensor:
        start = state.position(index) if state is not None else 0
        if self.input_proj is not None:
            x = self.input_proj(x)
        rope = rotary_angles(start, x.shape[1], self.head_dim, self.rope_theta, x.device)
        for layer_index, layer in enumerate(self.layers):
            cache = state.layer_cache(index, layer_index) if state is not None else None
            x = layer(x, self.window, rope, cache)
        if state is not None:
            state.advance(index, x.shape[1])
        if self.output_proj is not None:
            x = self.output_proj(x)
        return x


class CodecStack(nn.Module):
    """The encoder or decoder: stages executed in order (patchify reshapes and transformer stages)."""

    def __init__(self, stages: list[dict], windows: list[int | None], fold: bool, config):
        super().__init__()
        self.stages = nn.ModuleList(
            CodecPatchify(spec["patch_size"], fold)
            if spec["type"] == "patchify"
            else CodecTransformerStage(spec, window, config.layer_norm_eps, config.layer_scale_initial_scale)
            for spec, window in zip(stages, windows)
        )

    def forward(self, x: torch.Tensor, state: CodecStreamingState | None = None) -> torch.Tensor:
        for index, stage in enumerate(self.stages):
            x = stage(x, state=state, index=index)
        return x


__all__ = [
    "CodecAttention",
    "CodecLayerScale",
    "CodecMLP",
    "CodecPatchify",
    "CodecStack",
    "CodecTransformerLayer",
    "CodecTransformerStage",
    "apply_interleaved_rope",
    "rotary_angles",
    "sliding_window_attention",
]
