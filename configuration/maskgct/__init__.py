"""Configurations of the MaskGCT family (semantic codec, acoustic codec, T2S, S2A and the bundle)."""

from .configuration_maskgct import (
    MaskGctAcousticCodecConfig,
    MaskGctConfig,
    MaskGctS2AConfig,
    MaskGctSemanticCodecConfig,
    MaskGctT2SConfig,
)

__all__ = [
    "MaskGctAcousticCodecConfig",
    "MaskGctConfig",
    "MaskGctS2AConfig",
    "MaskGctSemanticCodecConfig",
    "MaskGctT2SConfig",
]
