"""modeling"""
from .audio_tokenizer import (  # noqa: F401
    CodecTTSAudioTokenizerDecoderOutput,
    CodecTTSAudioTokenizerEncoderOutput,
    CodecTTSAudioTokenizerModel,
    CodecTTSAudioTokenizerOutput,
)
from .codec_streaming import CodecStreamingState  # noqa: F401
from .delay import CodecTTSDelayForConditionalGeneration, CodecTTSDelayOutputWithPast  # noqa: F401
from .delay_pattern import apply_delay_pattern, audio_block_rows, revert_delay_pattern  # noqa: F401
from .local import (  # noqa: F401
    CodecTTSLocalForConditionalGeneration,
    CodecTTSLocalModel,
    CodecTTSLocalOutputWithPast,
    CodecTTSLocalPreTrainedModel,
)
from .generation_local import CodecTTSLocalGenerateOutput  # noqa: F401
from .generation_delay import CodecTTSDelayGenerateOutput, DelayAudioFrameStreamer  # noqa: F401
