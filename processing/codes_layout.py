"""Which way round are these codes? One explicit rule for audio codes given as a reference or prefix.

The codec works in ``[codebooks, frames]`` (``encode(...).audio_codes`` is ``[batch, K, frames]``) while prompts are
built from ``[frames, codebooks]`` (what ``processor.encode_audio`` returns, and what the reference implementation
takes). Passing one for the other used to build a wrong prompt without any error whenever the shapes happened to fit.
:func:`reference_codes` accepts

* the codec's own encode output (an object with ``audio_codes [1, K, F]`` and ``audio_codes_lengths``): unambiguous,
  converted here;
* a 2-D integer tensor ``[frames, K]`` whose codebook count ``K`` is the model's ``n_vq`` or the codec's number of
  quantizers (longer codes are cut to the first ``n_vq`` codebooks);

and refuses a tensor whose *first* dimension is such a codebook count while the second is not, with a message that
says the layout it expects. A square tensor (as many frames as codebooks) cannot be told apart and is read in the
documented ``[frames, K]`` layout.
"""

from __future__ import annotations

from typing import Any

import torch


def is_codec_output(item: Any) -> bool:
    return not isinstance(item, torch.Tensor) and isinstance(getattr(item, "audio_codes", None), torch.Tensor)


def reference_codes(
    item: Any, n_vq: int, audio_pad_code: int, codec_num_quantizers: int | None = None
) -> torch.Tensor:
    """Validated int64 CPU codes ``[frames, n_vq]`` from a codes tensor ``[frames, K]`` or a codec encode output."""
    if is_codec_output(item):
        codes = item.audio_codes
        if codes.dim() != 3 or codes.shape[0] != 1:
            raise ValueError(
                f"a codec encode output used as one audio item must hold one clip (audio_codes [1, K, frames]); got "
                f"audio_codes of shape {tuple(codes.shape)}: pass one item per clip"
            )
        lengths = getattr(item, "audio_codes_lengths", None)
        frames = int(lengths[0]) if isinstance(lengths, torch.Tensor) and lengths.numel() else codes.shape[2]
        item = codes[0, :, :frames].T
    if not isinstance(item, torch.Tensor) or item.is_floating_point() or item.is_complex() or item.dtype == torch.bool:
        raise TypeError(f"audio codes must be an integer tensor [frames, n_vq], got {type(item).__name__}")
    if item.dim() != 2:
        raise ValueError(f"audio codes must be [frames, n_vq], got shape {tuple(item.shape)}")
    widths = {n_vq} | ({int(codec_num_quantizers)} if codec_num_quantizers and codec_num_quantizers >= n_vq else set())
    frames, width = item.shape
    if width not in widths:
        if frames in widths:
            raise ValueError(
                f"audio codes of shape {tuple(item.shape)} look like [codebooks, frames] (the codec's layout); "
                f"references and prefixes are [frames, codebooks] with {n_vq} codebooks: pass codes.T, or the "
                "codec's encode output itself"
            )
        expected = " or ".join(str(w) for w in sorted(widths))
        raise ValueError(
            f"audio codes have {width} codebooks (shape {tuple(item.shape)} = [frames, codebooks]) but {expected} "
            f"are expected{'' if width > n_vq else f'; this model needs at least n_vq={n_vq}'}"
        )
    codes = item[:, :n_vq].detach().cpu().long()
    if codes.numel() and (codes.min() < 0 or codes.max() >= audio_pad_code):
        raise ValueError(
            f"audio codes must lie in [0, {audio_pad_code}); got values in [{int(codes.min())}, {int(codes.max())}]"
        )
    return codes
