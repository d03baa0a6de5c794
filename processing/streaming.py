"""``codectts.processing.streaming`` (public path of the README): the MOSS streaming synthesis API.

The implementation lives with its family in :mod:`codectts.processing.moss.streaming`.
"""

from .moss.streaming import SpeechChunk, stream_speech  # noqa: F401
