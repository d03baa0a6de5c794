"""Optional post-filter of the original MetaVoice chain: DeepFilterNet 3 denoising (48 kHz output).

Not a dependency: install ``deepfilternet`` (``pip install codectts[deepfilter]``) to use it. Multi-band diffusion
(audiocraft) is not offered: the package pins an old torch/audiocraft stack and is not maintained; the plain EnCodec
decode is the deterministic default.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["deepfilternet_enhance"]

_STATE: dict = {}


def deepfilternet_enhance(waveform, sampling_rate: int) -> tuple[torch.Tensor, int]:
    """Denoise ``waveform [samples]`` with DeepFilterNet 3; returns ``(float32 [samples'], 48000)``.

    Raises:
        ImportError: ``deepfilternet`` is not installed (with the install command).
        ValueError: ``sampling_rate`` is not a positive integer.
    """
    try:
        from df.enhance import enhance, init_df
    except ImportError as error:
        raise ImportError(
            "the DeepFilterNet post-filter needs the optional package `deepfilternet` (and its torchaudio): "
            "pip install 'codectts[deepfilter]'"
        ) from error
    if isinstance(sampling_rate, bool) or int(sampling_rate) != sampling_rate or sampling_rate <= 0:
        raise ValueError(f"sampling_rate must be a positive integer, got {sampling_rate!r}")
    if "model" not in _STATE:
        _STATE["model"], _STATE["state"], _ = init_df()
    target = int(_STATE["state"].sr())
    audio = np.asarray(torch.as_tensor(waveform, dtype=torch.float32).reshape(-1).cpu())
    if int(sampling_rate) != target:
        import soxr

        audio = soxr.resample(audio, int(sampling_rate), target, quality="HQ").astype(np.float32)
    enhanced = enhance(_STATE["model"], _STATE["state"], torch.from_numpy(audio)[None])
    return enhanced.reshape(-1).float(), target
