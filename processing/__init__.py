"""Processing: prompts (messages, template, code rows), audio input/output and decoding of generated sequences.

Import-light on purpose: the processor class is imported lazily so that ``codectts.processing.moss.text_normalization``
and the row helpers can be used without loading transformers' processing machinery.
"""

from __future__ import annotations

__all__ = ["AudioInputError", "CodecTTSProcessor", "GeneratedSpeech", "build_assistant_message", "build_user_message"]


def __getattr__(name: str):
    if name in ("CodecTTSProcessor", "GeneratedSpeech"):
        from .moss import processor

        return getattr(processor, name)
    if name == "AudioInputError":
        from .audio_io import AudioInputError

        return AudioInputError
    if name in ("build_user_message", "build_assistant_message"):
        from .moss import messages

        return getattr(messages, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
