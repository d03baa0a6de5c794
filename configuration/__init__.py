"""configuration"""
from .audio_tokenizer import CodecTTSAudioTokenizerConfig  # noqa: F401
from .delay import DELAY_GENERATION_PRESETS, CodecTTSDelayConfig  # noqa: F401
from .local import CodecTTSLocalConfig  # noqa: F401
