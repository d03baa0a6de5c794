"""MaskGCT processor and text front-end."""

from .g2p import MaskGctG2P, PhonemizerNotAvailableError
from .processing_maskgct import MaskGctProcessor, default_feature_extractor, default_phone_vocab
from .tokenization_maskgct import MaskGctTokenizer

__all__ = [
    "MaskGctG2P",
    "MaskGctProcessor",
    "MaskGctTokenizer",
    "PhonemizerNotAvailableError",
    "default_feature_extractor",
    "default_phone_vocab",
]
