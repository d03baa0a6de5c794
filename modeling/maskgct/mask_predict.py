"""Iterative parallel mask-and-predict decoding (MaskGIT-style), as MaskGCT runs it for one token layer.

Generic over the network: the caller gives ``predict_logits(ids, mask, t)`` (conditional + guided forward at
diffusion time ``t``, returning logits [B, N, V]); this module owns the schedule, the top-k filter, the Gumbel
sampling with annealed temperature, the confidence-based re-masking and the random-number consumption.

Schedule (n steps, N slots): t_i = 1 - i/n; after step i, floor(sin(pi/2 * t_{i+1}) * N) slots stay masked, the
least confident ones (confidence = probability under the top-k-filtered distribution, perturbed by Gumbel noise
scaled by t_i). The last step of a multi-step run is greedy; a 1-step run samples at temperature 0.2.

Random numbers (``do_sample=True``): per step one uniform draw of the logits' shape for the token noise (skipped on
the greedy last step), then one of shape [B, N] for the choice noise, from ``generator`` (default: the global
generator of the logits' device) - the same stream as the original, so seeded runs reproduce it bit for bit.
``do_sample=False`` replaces every Gumbel draw by 0 (deterministic; the original's "noise-free" mode).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable

import torch

from ..token_selection import top_k_filter as top_k_tokens


def gumbel_noise(like: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """-log(-log(U + 1e-10) + 1e-10), U ~ U[0, 1) of ``like``'s shape (drawn like ``zeros_like(x).uniform_``)."""
    u = torch.zeros_like(like).uniform_(0, 1, generator=generator)
    return -torch.log(-torch.log(u + 1e-10) + 1e-10)


def top_k_filter(logits: torch.Tensor, filter_thres: float) -> torch.Tensor:
    """Keep the ceil((1 - filter_thres) * V) largest logits per position, -inf elsewhere."""
    k = max(1, math.ceil((1 - filter_thres) * logits.shape[-1]))
    return top_k_tokens(logits, k, ties="drop")


def classifier_free_guidance(cond: torch.Tensor, uncond: torch.Tensor, cfg: float, rescale_cfg: float) -> torch.Tensor:
    """Guidance on hidden states with std rescaling; the std is taken over the WHOLE batch tensor (quirk Q-T3)."""
    std_cond = cond.std()
    guided = cond + cfg * (cond - uncond)
    rescaled = guided * std_cond / guided.std()
    return rescale_cfg * rescaled + (1 - rescale_cfg) * guided


def timestep_schedule(steps: int) -> list[float]:
    """[1, 1 - h, ..., h, 0] with h = 1/steps, computed like the original (Python floats)."""
    h = 1.0 / steps
    return [1.0 - i * h for i in range(steps)] + [0.0]


def num_masked_after(t_next: float, length: int) -> int:
    """floor(sin(pi/2 * t) * N), evaluated in float32 like the original."""
    t = torch.full((1,), t_next, dtype=torch.float32)
    return int((torch.sin(t * math.pi / 2) * length).long()[0])


def as_positive_int(value, name: str) -> int:
    """``value`` as a Python int >= 1 (ints, numpy / 0-d torch integers), else a ValueError naming ``name``."""
    try:
        if isinstance(value, bool):
            raise TypeError
        number = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be a positive integer, got {value!r}") from None
    if number < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return number


def check_generation_args(steps: int, temperature: float, filter_thres: float, name: str = "n_timesteps") -> int:
    steps = as_positive_int(steps, name)
    if not temperature >= 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if not 0 <= filter_thres < 1:
        raise ValueError(f"filter_thres must be in [0, 1), got {filter_thres}")
    return steps


@torch.no_grad()
def mask_predict(
    predict_logits: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor],
    batch_size: int,
    length: int,
    steps: int,
    device: torch.device,
    temperature: float,
    filter_thres: float,
    do_sample: bool = True,
    generator: torch.Generator | None = None,
) -> torch.LongTensor:
    """Decode ``length`` tokens per row in ``steps`` parallel steps; returns ids [batch_size, length].

    ``predict_logits(ids [B, N] long, mask [B, N] bool (True = still masked), t: float) -> logits [B, N, V]``.
    """
    ids = torch.zeros(batch_size, length, dtype=torch.long, device=device)
    mask = torch.ones(batch_size, length, dtype=torch.bool, device=device)
    t_list = timestep_schedule(steps)
    for i in range(steps):
        t = t_list[i]
        logits = top_k_filter(predict_logits(ids, mask, t), filter_thres)
        temp = temperature * t
        choice_temp = 1.0 * t
        last = i == steps - 1
        if last and steps > 1:
            sampled = logits.argmax(dim=-1)
        else:
            if last:  # a single step samples at temperature 0.2
                temp = 0.2
            scaled = logits / max(max(temp, 1e-3), 1e-10)
            noise = gumbel_noise(logits, generator) if do_sample else torch.zeros_like(logits)
            sampled = (scaled + noise).argmax(dim=-1)
        ids = torch.where(mask, sampled, ids)
        scores = logits.softmax(dim=-1).gather(-1, sampled[..., None])[..., 0]
        noise = gumbel_noise(scores, generator) if do_sample else torch.zeros_like(scores)
        scores = 1 - (choice_temp * noise + scores)
        n_masked = num_masked_after(t_list[i + 1], length)
        if n_masked == 0:
            break
        scores = scores.masked_fill(~mask, -torch.finfo(scores.dtype).max)
        remask = scores.topk(n_masked, dim=-1).indices
        mask = torch.zeros_like(mask).scatter(1, remask, True)
        ids = ids.masked_fill(mask, 0)
    return ids
