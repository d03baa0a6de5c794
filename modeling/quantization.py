"""Weight-only int8 for a whole generator (embeddings and heads included), through transformers' torchao integration.

``TorchAoConfig(Int8WeightOnlyConfig())`` converts the ``nn.Linear`` layers only: torchao's default filter skips
embedding tables and transformers keeps the output head in the load dtype. With a speech-LM vocabulary (155,648 text
rows, plus ``n_vq`` audio tables and heads) those are much of the model — on the CPU "big" benchmark config two
thirds of the float32 bytes — so the model would keep 0.7–0.85x of its float32 size. :func:`int8_weight_only_config`
names every linear layer and embedding table explicitly (torchao's ``FqnToConfig`` with exact module names), so
``from_pretrained(folder, quantization_config=int8_weight_only_config(config))`` stores one byte per weight plus one
scale per output row (per table row for embeddings) everywhere: about 0.25x the float32 weight bytes.

Precision: per-row int8 of an embedding table is a lookup of rows quantised independently; of a head, one scale per
vocabulary row. The greedy tokens agree with float32 as often with the heads and embeddings quantised as without
(benchmarks/README.md); ``embeddings=False`` / ``heads=False`` keep them in the load dtype where that matters.
Speed: torchao's int8 tensor dequantises the *whole* table for an ``nn.Embedding`` lookup (0.8 s per call for a
155,648 x 768 table on one CPU core); :func:`embedding_lookup` and :func:`linear_rows` gather the int8 rows and their
scales first, which gives the same numbers for the price of the rows asked for.
The codec is a separate model and is never quantised by this config.
"""

from __future__ import annotations

import re

import torch
from torch import nn
from torch.nn import functional as F

_HEAD_NAME = re.compile(r"(^|[._])lm_heads?(\.\d+)?$")  # lm_head, audio_lm_head, lm_heads.3


def quantizable_modules(config, *, embeddings: bool = True, heads: bool = True, model_class=None) -> list[str]:
    """Names of the ``nn.Linear`` / ``nn.Embedding`` modules of the model built from ``config`` to store in int8
    (``model_class``: the class ``from_pretrained`` will be called on; default: what ``AutoModel`` maps it to)."""
    from transformers import AutoModel

    with torch.device("meta"):  # names only: no memory, no initialisation cost
        model = AutoModel.from_config(config) if model_class is None else model_class(config)
    names = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Embedding) and not embeddings:
            continue
        if isinstance(module, nn.Linear) and _HEAD_NAME.search(name) and not heads:
            continue
        if isinstance(module, (nn.Linear, nn.Embedding)):
            names.append(name)
    return names


def int8_weight_only_config(config, *, embeddings: bool = True, heads: bool = True, model_class=None):
    """A ``TorchAoConfig`` storing every linear layer and embedding table of the generator in int8 (weight-only).

    Args:
        config: the generator's config (``AutoConfig.from_pretrained(folder)`` after ``import codectts``).
        embeddings: also the embedding tables (text and audio); ``False`` keeps them in the load dtype.
        heads: also the output heads (text and audio); ``False`` keeps them in the load dtype.
        model_class: the class you will call ``from_pretrained`` on, when it is not the one ``AutoModel`` maps the
            config to (module names differ between a base model and its generation head).

    Returns:
        ``transformers.TorchAoConfig`` for ``from_pretrained(..., quantization_config=...)``. Needs ``torchao >= 0.15``
        (``pip install codectts[quantization]``).
    """
    try:
        from torchao.quantization import FqnToConfig, Int8WeightOnlyConfig
    except ImportError as err:
        raise ImportError(
            "int8_weight_only_config needs torchao >= 0.15 (FqnToConfig): pip install 'codectts[quantization]'"
        ) from err
    from transformers import TorchAoConfig

    per_module = Int8WeightOnlyConfig()
    names = quantizable_modules(config, embeddings=embeddings, heads=heads, model_class=model_class)
    # modules_to_not_convert=[]: transformers would otherwise keep the output head whatever the names say
    return TorchAoConfig(FqnToConfig({name: per_module for name in names}), modules_to_not_convert=[])


def _is_per_row_int8(weight: torch.Tensor) -> bool:
    """torchao's Int8Tensor with one scale per row: rows can be gathered (``weight[rows]``) before dequantising."""
    if type(weight).__name__ != "Int8Tensor" or not type(weight).__module__.startswith("torchao"):
        return False
    block = getattr(weight, "block_size", None)
    return weight.dim() == 2 and block is not None and list(block) == [1, weight.shape[1]]


def row_indexable(weight: torch.Tensor) -> bool:
    """Whether ``weight[rows]`` gives the exact rows of ``weight`` (plain tensors, per-row int8 from torchao); packed
    formats (4-bit, bitsandbytes) are not, and callers fall back to the whole weight."""
    return type(weight) in (torch.Tensor, nn.Parameter) or _is_per_row_int8(weight)


def embedding_lookup(embedding: nn.Embedding, ids: torch.Tensor) -> torch.Tensor:
    """``embedding(ids)``, dequantising only the looked-up rows of a per-row int8 table (same values)."""
    weight = embedding.weight
    if not _is_per_row_int8(weight):
        return embedding(ids)
    rows = weight[ids.reshape(-1)].dequantize()
    return rows.reshape(*ids.shape, rows.shape[-1])


def linear_rows(linear: nn.Linear, hidden: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``linear(hidden)[..., rows]`` computing only those output rows where the weight allows it."""
    if linear.bias is None and row_indexable(linear.weight):
        return F.linear(hidden, linear.weight[rows])
    return linear(hidden)[..., rows]


__all__ = ["embedding_lookup", "int8_weight_only_config", "linear_rows", "quantizable_modules", "row_indexable"]
