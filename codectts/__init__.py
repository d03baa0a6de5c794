"""codectts: codec-token text-to-speech models for Hugging Face transformers.

Importing the package registers its configuration, model and processor classes with transformers' Auto
classes, so ``AutoConfig`` / ``AutoModel`` / ``AutoProcessor`` ``.from_pretrained(folder)`` work on folders written
by our converters.
"""

from __future__ import annotations

__version__ = "0.1.0"


def _register_auto_classes() -> None:
    from transformers import AutoConfig, AutoModel

    # --- audio tokenizer (codec) ---
    from .configuration.moss.audio_tokenizer import CodecTTSAudioTokenizerConfig
    from .modeling.moss.audio_tokenizer import CodecTTSAudioTokenizerModel

    AutoConfig.register(CodecTTSAudioTokenizerConfig.model_type, CodecTTSAudioTokenizerConfig, exist_ok=True)
    AutoModel.register(CodecTTSAudioTokenizerConfig, CodecTTSAudioTokenizerModel, exist_ok=True)

    # --- delay-pattern generator ---
    from .configuration.moss.delay import CodecTTSDelayConfig
    from .modeling.moss.delay import CodecTTSDelayForConditionalGeneration

    AutoConfig.register(CodecTTSDelayConfig.model_type, CodecTTSDelayConfig, exist_ok=True)
    AutoModel.register(CodecTTSDelayConfig, CodecTTSDelayForConditionalGeneration, exist_ok=True)

    # --- local-transformer generator ---
    from .configuration.moss.local import CodecTTSLocalConfig
    from .modeling.moss.local import CodecTTSLocalForConditionalGeneration

    AutoConfig.register(CodecTTSLocalConfig.model_type, CodecTTSLocalConfig, exist_ok=True)
    AutoModel.register(CodecTTSLocalConfig, CodecTTSLocalForConditionalGeneration, exist_ok=True)

    # --- processor ---
    from transformers import AutoProcessor

    from .processing.moss.processor import CodecTTSProcessor

    AutoProcessor.register(CodecTTSDelayConfig, CodecTTSProcessor, exist_ok=True)
    AutoProcessor.register(CodecTTSLocalConfig, CodecTTSProcessor, exist_ok=True)
    # pipeline("text-to-speech") looks models up in the text-to-waveform mapping
    from transformers import AutoModelForTextToWaveform

    AutoModelForTextToWaveform.register(CodecTTSDelayConfig, CodecTTSDelayForConditionalGeneration, exist_ok=True)
    AutoModelForTextToWaveform.register(CodecTTSLocalConfig, CodecTTSLocalForConditionalGeneration, exist_ok=True)


def _register_metavoice() -> None:
    from transformers import AutoConfig, AutoModel, AutoModelForTextToWaveform, AutoProcessor, AutoTokenizer

    from .configuration.metavoice import (
        MetaVoiceConfig,
        MetaVoiceFirstStageConfig,
        MetaVoiceSecondStageConfig,
        MetaVoiceSpeakerEncoderConfig,
    )
    from .modeling.metavoice import (
        MetaVoiceFirstStageModel,
        MetaVoiceForTextToSpeech,
        MetaVoiceSecondStageModel,
        MetaVoiceSpeakerEncoder,
    )
    from .processing.metavoice import MetaVoiceProcessor, MetaVoiceTokenizer

    for config, model in (
        (MetaVoiceConfig, MetaVoiceForTextToSpeech),
        (MetaVoiceFirstStageConfig, MetaVoiceFirstStageModel),
        (MetaVoiceSecondStageConfig, MetaVoiceSecondStageModel),
        (MetaVoiceSpeakerEncoderConfig, MetaVoiceSpeakerEncoder),
    ):
        AutoConfig.register(config.model_type, config, exist_ok=True)
        AutoModel.register(config, model, exist_ok=True)
    AutoModelForTextToWaveform.register(MetaVoiceConfig, MetaVoiceForTextToSpeech, exist_ok=True)
    AutoProcessor.register(MetaVoiceConfig, MetaVoiceProcessor, exist_ok=True)
    # pipeline("text-to-speech") loads a tokenizer too (the BPE with the first-stage offset)
    AutoTokenizer.register(MetaVoiceConfig, tokenizer_class=MetaVoiceTokenizer, exist_ok=True)


def _register_moss_realtime() -> None:
    from transformers import AutoConfig, AutoModel, AutoProcessor

    from .configuration.moss.realtime import CodecTTSRealtimeConfig
    from .modeling.moss.realtime import CodecTTSRealtimeForConditionalGeneration
    from .processing.moss.realtime import CodecTTSRealtimeProcessor

    AutoConfig.register(CodecTTSRealtimeConfig.model_type, CodecTTSRealtimeConfig, exist_ok=True)
    AutoModel.register(CodecTTSRealtimeConfig, CodecTTSRealtimeForConditionalGeneration, exist_ok=True)
    AutoProcessor.register(CodecTTSRealtimeConfig, CodecTTSRealtimeProcessor, exist_ok=True)


def _register_maskgct() -> None:
    from transformers import AutoConfig, AutoModel, AutoModelForTextToWaveform, AutoProcessor, AutoTokenizer

    from .configuration.maskgct import (
        MaskGctAcousticCodecConfig,
        MaskGctConfig,
        MaskGctS2AConfig,
        MaskGctSemanticCodecConfig,
        MaskGctT2SConfig,
    )
    from .modeling.maskgct import (
        MaskGctAcousticCodecModel,
        MaskGctForTextToSpeech,
        MaskGctS2AModel,
        MaskGctSemanticCodecModel,
        MaskGctT2SModel,
    )
    from .processing.maskgct import MaskGctProcessor, MaskGctTokenizer

    for config_cls, model_cls in (
        (MaskGctSemanticCodecConfig, MaskGctSemanticCodecModel),
        (MaskGctAcousticCodecConfig, MaskGctAcousticCodecModel),
        (MaskGctT2SConfig, MaskGctT2SModel),
        (MaskGctS2AConfig, MaskGctS2AModel),
        (MaskGctConfig, MaskGctForTextToSpeech),
    ):
        AutoConfig.register(config_cls.model_type, config_cls, exist_ok=True)
        AutoModel.register(config_cls, model_cls, exist_ok=True)
    AutoModelForTextToWaveform.register(MaskGctConfig, MaskGctForTextToSpeech, exist_ok=True)
    AutoProcessor.register(MaskGctConfig, MaskGctProcessor, exist_ok=True)
    # the g2p as a tokenizer: pipeline("text-to-speech") insists on loading one
    AutoTokenizer.register(MaskGctConfig, slow_tokenizer_class=MaskGctTokenizer, exist_ok=True)


_register_auto_classes()
_register_moss_realtime()
_register_metavoice()
_register_maskgct()
