"""configuration"""
from .moss.audio_tokenizer import CodecTTSAudioTokenizerConfig  # noqa: F401
from .moss.delay import DELAY_GENERATION_PRESETS, CodecTTSDelayConfig  # noqa: F401
from .moss.local import CodecTTSLocalConfig  # noqa: F401
