"""Phone tokenizer: MaskGCT's g2p as a transformers tokenizer (text -> phone ids of the official phone table).

`MaskGctProcessor` is what builds generate() inputs; this class exists so that tools that expect a tokenizer next
to a text-to-speech model (``pipeline("text-to-speech")`` loads one) find it, and so that phone sequences can be
tokenized / decoded with the usual tokenizer API.
"""

from __future__ import annotations

import json
import os

from transformers import PreTrainedTokenizer

from .g2p import MaskGctG2P


class MaskGctTokenizer(PreTrainedTokenizer):
    vocab_files_names = {"vocab_file": "phone_vocab.json"}
    model_input_names = ["input_ids", "attention_mask"]

    def __init__(self, vocab_file: str | None = None, language: str = "en", **kwargs):
        if vocab_file is None:
            from .processing_maskgct import default_phone_vocab

            vocab = default_phone_vocab()
        else:
            with open(vocab_file, encoding="utf-8") as f:
                vocab = json.load(f)["vocab"]
        self.vocab = dict(vocab)
        self.ids_to_tokens = {i: p for p, i in self.vocab.items()}
        self.language = language
        self._g2p = MaskGctG2P(self.vocab)
        super().__init__(language=language, **kwargs)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def get_vocab(self) -> dict[str, int]:
        return dict(self.vocab)

    def _tokenize(self, text: str, **kwargs) -> list[str]:
        phones, _ = self._g2p(text, kwargs.get("language", self.language))
        return [p for p in phones.split("|") if p in self.vocab]

    def _convert_token_to_id(self, token: str) -> int:
        return self.vocab[token]

    def _convert_id_to_token(self, index: int) -> str:
        return self.ids_to_tokens[index]

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        return "|".join(tokens)

    def save_vocabulary(self, save_directory: str, filename_prefix: str | None = None) -> tuple[str]:
        path = os.path.join(save_directory, (filename_prefix + "-" if filename_prefix else "") + "phone_vocab.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"vocab": self.vocab}, f, ensure_ascii=False, indent=1)
        return (path,)
