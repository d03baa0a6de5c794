"""configuration"""
from .delay import DELAY_GENERATION_PRESETS, CodecTTSDelayConfig  # noqa: F401
