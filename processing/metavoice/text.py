"""Text side of MetaVoice: the original ``normalize_text`` and the byte-level BPE of the checkpoints."""

from __future__ import annotations

import base64
import json
import os
import re
from functools import lru_cache
from pathlib import Path

__all__ = ["MetaVoiceTokenizer", "normalize_text"]

# The original's translation table, keyed by *decimal* code points. 2122 is the original's attempt at "™" (U+2122
# = 8482); as decimal it is U+084A, so "™" is not converted and then rejected, exactly as in the original.
_TRANSLATION = {
    **dict.fromkeys((8175, 8189, 8190, 8216, 8217, 8219, 8242, 8245), "'"),
    180: "'",
    **dict.fromkeys(range(8208, 8214), "-"),
    8214: "||",
    8218: ",",
    8222: ",,",
    **dict.fromkeys((8220, 8221, 8223, 8243, 8246), '"'),
    8228: ".",
    8229: "..",
    8230: "...",
    2122: "TM",
}
_SPACES = re.compile(r"\s\s+")


def normalize_text(text: str) -> str:
    """The original MetaVoice text normalisation: typographic quotes/dashes/ellipses to ASCII, Latin-1 only
    (anything else raises `ValueError`), tabs/newlines/``*`` to spaces, whitespace runs collapsed, stripped."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    text = text.translate(_TRANSLATION)
    unsupported = [(c, ord(c)) for c in text if ord(c) >= 256]
    if unsupported:
        raise ValueError(f"Non-supported character found: {unsupported} (MetaVoice reads Latin-1 text only)")
    for char in "\t\n\r*":
        text = text.replace(char, " ")
    return _SPACES.sub(" ", text.strip())


def _bpe(piece: bytes, ranks: dict[bytes, int]) -> list[bytes]:
    """tiktoken's byte-pair merge: repeatedly merge the adjacent pair whose concatenation has the lowest rank."""
    parts = [piece[i : i + 1] for i in range(len(piece))]
    while len(parts) > 1:
        best, best_rank = None, None
        for i in range(len(parts) - 1):
            rank = ranks.get(parts[i] + parts[i + 1])
            if rank is not None and (best_rank is None or rank < best_rank):
                best, best_rank = i, rank
        if best is None:
            break
        parts[best : best + 2] = [parts[best] + parts[best + 1]]
    return parts


class MetaVoiceTokenizer:
    r"""The checkpoints' byte-level BPE (a tiktoken ``Encoding``: GPT-2 pre-tokenisation regex, ``mergeable_ranks``,
    ``<|endoftext|>``), re-implemented without tiktoken.

    ``encode(text)`` = BPE ranks + end-of-text, each ``+ offset`` (2049 for the first stage, 1025 for the second);
    no normalisation (the processor applies :func:`normalize_text`). Special-token strings in the text are
    rejected like tiktoken does.

    Args:
        mergeable_ranks (`dict[bytes, int]`): the BPE table.
        pat_str (`str`): pre-tokenisation regex (needs the `regex` module for ``\p{L}``).
        special_tokens (`dict[str, int]`): ``{"<|endoftext|>": 512}``.
        offset (`int`): added to every id.
        name (`str`): the table's name.
    """

    vocab_file_name = "metavoice_tokenizer.json"
    # read by transformers' pipelines: prompts are padded with end-of-audio by the processor, not by a text token
    pad_token_id = None

    def __init__(
        self,
        mergeable_ranks,
        pat_str: str,
        special_tokens: dict[str, int],
        offset: int = 0,
        name: str = "metavoice_bpe",
    ):
        import regex

        self.mergeable_ranks = {bytes(k): int(v) for k, v in mergeable_ranks.items()}
        self.pat_str = pat_str
        self.special_tokens = {str(k): int(v) for k, v in special_tokens.items()}
        if "<|endoftext|>" not in self.special_tokens:
            raise ValueError("the BPE table needs an <|endoftext|> special token")
        self.offset = int(offset)
        self.name = name
        self._pattern = regex.compile(pat_str)
        self._decoder = {v: k for k, v in self.mergeable_ranks.items()}
        self._special_decoder = {v: k.encode("utf-8") for k, v in self.special_tokens.items()}
        self._cached_bpe = lru_cache(maxsize=4096)(self._bpe_ids)

    @property
    def eot_token(self) -> int:
        """End-of-text id (with the offset)."""
        return self.special_tokens["<|endoftext|>"] + self.offset

    @property
    def vocab_size(self) -> int:
        return max([*self.mergeable_ranks.values(), *self.special_tokens.values()]) + 1

    def __len__(self) -> int:
        return self.vocab_size

    def _bpe_ids(self, piece: bytes) -> tuple[int, ...]:
        rank = self.mergeable_ranks.get(piece)
        if rank is not None:
            return (rank,)
        return tuple(self.mergeable_ranks[part] for part in _bpe(piece, self.mergeable_ranks))

    def encode(self, text: str, add_end_of_text: bool = True) -> list[int]:
        """``text`` -> ids (+ end-of-text), all ``+ offset``."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        for special in self.special_tokens:
            if special in text:
                raise ValueError(f"text contains the special token {special!r}, which is not allowed in input text")
        ids: list[int] = []
        for match in self._pattern.finditer(text):
            ids.extend(self._cached_bpe(match.group().encode("utf-8")))
        if add_end_of_text:
            ids.append(self.special_tokens["<|endoftext|>"])
        return [i + self.offset for i in ids]

    def __call__(self, text, **kwargs):
        if isinstance(text, str):
            return {"input_ids": self.encode(text)}
        return {"input_ids": [self.encode(t) for t in text]}

    def decode(self, ids, errors: str = "replace") -> str:
        """Ids (with the offset) -> text; special tokens are rendered as their strings."""
        out = bytearray()
        for i in ids:
            i = int(i) - self.offset
            if i in self._decoder:
                out += self._decoder[i]
            elif i in self._special_decoder:
                out += self._special_decoder[i]
            else:
                raise ValueError(f"id {i + self.offset} is not a text id of this tokenizer (offset {self.offset})")
        return bytes(out).decode("utf-8", errors=errors)

    def with_offset(self, offset: int) -> MetaVoiceTokenizer:
        """The same table with another offset (the second stage uses 1025)."""
        return MetaVoiceTokenizer(self.mergeable_ranks, self.pat_str, self.special_tokens, offset, self.name)

    # -- persistence: the original's dict format, ranks base64-encoded ------------------------------------------------

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "pat_str": self.pat_str,
            "mergeable_ranks": {base64.b64encode(k).decode("ascii"): v for k, v in self.mergeable_ranks.items()},
            "special_tokens": self.special_tokens,
            "offset": self.offset,
        }

    @classmethod
    def from_dict(cls, data: dict, offset: int | None = None) -> MetaVoiceTokenizer:
        """From the checkpoint's ``meta["tokenizer"]`` (bytes keys) or its JSON form (base64 keys)."""
        missing = {"pat_str", "mergeable_ranks", "special_tokens"} - set(data)
        if missing:
            raise ValueError(f"tokenizer data lacks {sorted(missing)}")
        ranks = {
            (k if isinstance(k, (bytes, bytearray)) else base64.b64decode(k)): v
            for k, v in data["mergeable_ranks"].items()
        }
        off = data.get("offset") if offset is None else offset
        return cls(ranks, data["pat_str"], data["special_tokens"], off or 0, data.get("name", "metavoice_bpe"))

    def save_pretrained(self, save_directory: str | os.PathLike) -> list[str]:
        path = Path(save_directory) / self.vocab_file_name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        return [str(path)]

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, **kwargs) -> MetaVoiceTokenizer:
        path = Path(folder) / cls.vocab_file_name
        if not path.is_file():
            raise FileNotFoundError(f"{folder} has no {cls.vocab_file_name}")
        return cls.from_dict(json.loads(path.read_text()))

    def __repr__(self) -> str:
        return f"MetaVoiceTokenizer(name={self.name!r}, ranks={len(self.mergeable_ranks)}, offset={self.offset})"
