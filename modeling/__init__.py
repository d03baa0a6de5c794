"""modeling"""
from .moss.audio_tokenizer import (  # noqa: F401
    CodecTTSAudioTokenizerDecoderOutput,
    CodecTTSAudioTokenizerEncoderOutput,
    CodecTTSAudioTokenizerModel,
    CodecTTSAudioTokenizerOutput,
)
from .moss.codec_streaming import CodecStreamingState  # noqa: F401
from .moss.delay import CodecTTSDelayForConditionalGeneration, CodecTTSDelayOutputWithPast  # noqa: F401
from .moss.delay_pattern import apply_delay_pattern, audio_block_rows, revert_delay_pattern  # noqa: F401
from .moss.generation_delay import CodecTTSDelayGenerateOutput, DelayAudioFrameStreamer  # noqa: F401
from .moss.generation_local import CodecTTSLocalGenerateOutput  # noqa: F401
from .moss.local import (  # noqa: F401
    CodecTTSLocalForConditionalGeneration,
    CodecTTSLocalModel,
    CodecTTSLocalOutputWithPast,
    CodecTTSLocalPreTrainedModel,
)
