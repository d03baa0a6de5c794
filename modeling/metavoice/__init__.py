"""MetaVoice-1B models: first stage (causal GPT), second stage (non-causal), speaker encoder, end-to-end TTS."""

from .first_stage import MetaVoiceFirstStageModel, MetaVoiceFirstStageOutput, MetaVoicePreTrainedModel
from .guidance import MetaVoiceGuidanceLogitsProcessor, MetaVoiceInterleaveLogitsProcessor, guidance_weights
from .modeling_metavoice import MetaVoiceForTextToSpeech, MetaVoiceGenerationOutput
from .second_stage import MetaVoiceSecondStageModel, MetaVoiceSecondStageOutput
from .speaker_encoder import MetaVoiceSpeakerEncoder, MetaVoiceSpeakerEncoderOutput

__all__ = [
    "MetaVoiceFirstStageModel",
    "MetaVoiceFirstStageOutput",
    "MetaVoiceForTextToSpeech",
    "MetaVoiceGenerationOutput",
    "MetaVoiceGuidanceLogitsProcessor",
    "MetaVoiceInterleaveLogitsProcessor",
    "MetaVoicePreTrainedModel",
    "MetaVoiceSecondStageModel",
    "MetaVoiceSecondStageOutput",
    "MetaVoiceSpeakerEncoder",
    "MetaVoiceSpeakerEncoderOutput",
    "guidance_weights",
]
