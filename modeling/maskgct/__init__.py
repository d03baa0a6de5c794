"""MaskGCT (Amphion): semantic codec, acoustic codec, T2S, S2A and the end-to-end model."""

from .codecs import MaskGctAcousticCodecModel, MaskGctSemanticCodecModel
from .estimator import MaskGctDiffusionTransformer
from .generators import MaskGctPreTrainedModel, MaskGctS2AModel, MaskGctT2SModel
from .mask_predict import classifier_free_guidance, mask_predict
from .modeling_maskgct import MaskGctForTextToSpeech, MaskGctGenerationOutput

__all__ = [
    "MaskGctAcousticCodecModel",
    "MaskGctDiffusionTransformer",
    "MaskGctForTextToSpeech",
    "MaskGctGenerationOutput",
    "MaskGctPreTrainedModel",
    "MaskGctS2AModel",
    "MaskGctSemanticCodecModel",
    "MaskGctT2SModel",
    "classifier_free_guidance",
    "mask_predict",
]
