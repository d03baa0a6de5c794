"""MetaVoice-1B processing: text normalisation and BPE, speaker features, adapters, the processor."""

from .adapters import deinterleave_first_stage, split_second_stage_rows
from .processor import MetaVoiceProcessor
from .speaker_features import SpeakerFeatureSettings, mel_power_spectrogram, speaker_partials, trim_silence
from .text import MetaVoiceTokenizer, normalize_text

__all__ = [
    "MetaVoiceProcessor",
    "MetaVoiceTokenizer",
    "SpeakerFeatureSettings",
    "deinterleave_first_stage",
    "mel_power_spectrogram",
    "normalize_text",
    "speaker_partials",
    "split_second_stage_rows",
    "trim_silence",
]
