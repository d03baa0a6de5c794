"""Turning a stream of text deltas into token ids for MOSS-TTS-Realtime sessions.

Two policies (see `RealtimeSession`):

* :class:`TextSegmenter` (default, the original's): a character buffer cut into segments, each tokenized alone;
* :class:`StablePrefixTokenizer`: the whole text re-tokenized at every delta, releasing only a stable prefix.
"""

from __future__ import annotations

import re

__all__ = ["PUNCTUATION", "StablePrefixTokenizer", "TextSegmenter"]

# Characters after which a segment may end (then the whitespace that follows them joins the segment).
PUNCTUATION = "。！？!?.…,，;；:：—–-)]"
_CUT = re.compile("[" + re.escape(PUNCTUATION) + r"]+[^\S\n]*\n?|\n")


def _encode(tokenizer, text: str) -> list[int]:
    return list(tokenizer.encode(text, add_special_tokens=False)) if text else []


class TextSegmenter:
    """Cut text deltas into segments and tokenize every segment on its own.

    A segment ends after a run of punctuation (``PUNCTUATION``) plus the spaces that follow it, or after a newline,
    provided the segment then has at least ``min_chars`` characters; without such a cut, a buffer of ``max_chars``
    characters or more is cut after its last space (segments end with their whitespace in both rules). ``flush``
    returns the ids of whatever is left.
    """

    def __init__(self, tokenizer, min_chars: int = 8, max_chars: int = 32):
        if min_chars < 1 or max_chars < min_chars:
            raise ValueError(f"need 1 <= min_chars <= max_chars, got {min_chars}, {max_chars}")
        self.tokenizer = tokenizer
        self.min_chars = min_chars
        self.max_chars = max_chars
        self.buffer = ""

    def _next_cut(self) -> int | None:
        for match in _CUT.finditer(self.buffer):
            if match.end() >= self.min_chars:
                return match.end()
        if len(self.buffer) >= self.max_chars:
            space = self.buffer.rfind(" ")
            if space > 0:
                return space + 1  # the space ends the segment, as the spaces after punctuation do
        return None

    def segments(self, text: str) -> list[str]:
        """Add ``text``; return the complete segments it closes."""
        self.buffer += text
        out = []
        while (cut := self._next_cut()) is not None:
            out.append(self.buffer[:cut])
            self.buffer = self.buffer[cut:]
        return out

    def push(self, text: str) -> list[int]:
        ids: list[int] = []
        for segment in self.segments(text):
            ids.extend(_encode(self.tokenizer, segment))
        return ids

    def flush(self) -> list[int]:
        rest, self.buffer = self.buffer, ""
        return _encode(self.tokenizer, rest)


class StablePrefixTokenizer:
    """Re-tokenize the whole text at every delta; release ids that are at least ``hold_back`` from the end.

    Ids already released are never taken back (a later re-tokenization that changes them is ignored).
    """

    def __init__(self, tokenizer, hold_back: int = 3):
        if hold_back < 0:
            raise ValueError(f"hold_back must be >= 0, got {hold_back}")
        self.tokenizer = tokenizer
        self.hold_back = hold_back
        self.text = ""
        self.released = 0

    def _release(self, upto_end: bool) -> list[int]:
        ids = _encode(self.tokenizer, self.text)
        stop = len(ids) if upto_end else max(len(ids) - self.hold_back, 0)
        new = ids[self.released : stop]
        self.released = max(self.released, stop)
        return new

    def push(self, text: str) -> list[int]:
        self.text += text
        return self._release(upto_end=False)

    def flush(self) -> list[int]:
        return self._release(upto_end=True)
