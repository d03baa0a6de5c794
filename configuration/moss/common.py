"""What the configurations of the codec-token generators (Delay and Local) have in common.

Both families read rows of ``1 + n_vq`` tokens (a text token and one code per RVQ codebook) with a Qwen3 backbone,
use the special text tokens of the MOSS-TTS tokenizer and describe the codec their codes belong to. The shared fields
are set, validated and derived here once; each family's config adds its own fields and calls
:meth:`CodecTTSGeneratorConfigMixin._init_generator_config` at the end of its ``__init__``.

A mixin (not a `PretrainedConfig` subclass) keeps every family config a direct `PretrainedConfig` with an explicit
``__init__``, which behaves the same under transformers 5.0 and the dataclass-based configs of later versions.
"""

from __future__ import annotations

import copy
from typing import Any

from transformers import Qwen3Config

__all__ = [
    "DEFAULT_SPECIAL_TOKEN_IDS",
    "CodecTTSGeneratorConfigMixin",
    "original_generator_kwargs",
]

# Token ids of the MOSS-TTS tokenizer (Qwen3 BPE with renamed specials); only used as defaults.
DEFAULT_SPECIAL_TOKEN_IDS: dict[str, int] = dict(
    pad_token_id=151643,
    im_start_token_id=151644,
    im_end_token_id=151645,
    audio_start_token_id=151652,
    audio_end_token_id=151653,
    audio_user_slot_token_id=151654,
    audio_assistant_gen_slot_token_id=151656,
    audio_assistant_delay_slot_token_id=151662,
)

# Fields of an original MOSS-TTS ``config.json`` that keep their name and meaning in both families.
_ORIGINAL_SHARED_FIELDS = (
    "n_vq",
    "audio_vocab_size",
    "audio_pad_code",
    "sampling_rate",
    "initializer_range",
)


def text_config_from(text_config: Qwen3Config | dict | None, default: dict[str, Any]) -> Qwen3Config:
    """The backbone sub-config from a `Qwen3Config`, a dict (a saved ``config.json`` entry) or ``None`` (``default``)."""
    if text_config is None:
        return Qwen3Config(**default)
    if isinstance(text_config, dict):
        return Qwen3Config(**{k: v for k, v in text_config.items() if k != "model_type"})
    if isinstance(text_config, Qwen3Config):
        return text_config
    raise TypeError(f"text_config must be a Qwen3Config or a dict, got {type(text_config).__name__}")


def checked_audio_fields(n_vq: int, audio_vocab_size: int, audio_pad_code: int | None) -> tuple[int, int, int]:
    """``(n_vq, audio_vocab_size, audio_pad_code)`` validated; the pad code defaults to ``audio_vocab_size`` (the
    extra last row of every audio embedding and head)."""
    if n_vq < 1:
        raise ValueError(f"n_vq must be >= 1, got {n_vq}")
    if audio_vocab_size < 1:
        raise ValueError(f"audio_vocab_size must be >= 1, got {audio_vocab_size}")
    pad = int(audio_vocab_size if audio_pad_code is None else audio_pad_code)
    if pad != audio_vocab_size:
        # the pad is the extra last row of the embeddings and heads (the checkpoints mask that logit): any other value
        # would make a real code unpredictable and the extra row predictable
        raise ValueError(f"audio_pad_code must equal audio_vocab_size ({audio_vocab_size}), got {pad}")
    return int(n_vq), int(audio_vocab_size), pad


class CodecTTSGeneratorConfigMixin:
    """Shared fields and derived sizes of the generator configs. Mix in before `PretrainedConfig`:
    ``class CodecTTSDelayConfig(CodecTTSGeneratorConfigMixin, PretrainedConfig)``."""

    def _init_generator_config(
        self,
        *,
        text_config: Qwen3Config | dict | None,
        default_text_config: dict[str, Any],
        n_vq: int,
        audio_vocab_size: int,
        audio_pad_code: int | None,
        special_token_ids: dict[str, int],
        sampling_rate: int,
        frame_rate: float,
        initializer_range: float,
        **kwargs,
    ) -> None:
        """Set the shared fields, then run `PretrainedConfig.__init__` with the remaining ``kwargs``.

        ``language_config`` (the original MOSS-TTS name of ``text_config``) is accepted in ``kwargs`` as an alias.
        """
        language_config = kwargs.pop("language_config", None)
        if text_config is None:
            text_config = language_config
        self.text_config = text_config_from(text_config, default_text_config)
        self.n_vq, self.audio_vocab_size, self.audio_pad_code = checked_audio_fields(
            n_vq, audio_vocab_size, audio_pad_code
        )
        token_ids = dict(special_token_ids)
        pad_token_id = token_ids.pop("pad_token_id")
        for name, value in token_ids.items():
            setattr(self, name, value)
        self.sampling_rate = sampling_rate
        self.frame_rate = frame_rate
        self.initializer_range = initializer_range
        kwargs.setdefault("tie_word_embeddings", False)
        super().__init__(pad_token_id=pad_token_id, **kwargs)
        # set after the base __init__: some transformers versions reset token ids from kwargs there
        self.pad_token_id = pad_token_id

    # The backbone sizes, mirrored for generic code (e.g. cache sizing) that reads them from the top-level config.
    @property
    def hidden_size(self) -> int:
        """Backbone width (the width of every channel embedding and head input)."""
        return self.text_config.hidden_size

    @property
    def vocab_size(self) -> int:
        """Text vocabulary size (rows of the text embedding and text head)."""
        return self.text_config.vocab_size

    @property
    def language_config(self) -> Qwen3Config:
        """Alias of `text_config` under the original MOSS-TTS name."""
        return self.text_config

    @property
    def num_channels(self) -> int:
        """Channels per row: 1 text + ``n_vq`` audio."""
        return 1 + self.n_vq

    @property
    def audio_num_embeddings(self) -> int:
        """Rows of every audio embedding table / outputs of every audio head (codes + pad)."""
        return self.audio_vocab_size + 1


def original_generator_kwargs(original: dict[str, Any]) -> dict[str, Any]:
    """Constructor arguments shared by both families, read from an original MOSS-TTS ``config.json`` dict.

    Only the fields present (and not null) are taken, so absent ones keep the config's defaults. The backbone
    (``language_config``) is copied without its ``model_type`` / ``transformers_version`` bookkeeping.
    """
    kwargs: dict[str, Any] = {
        key: original[key]
        for key in (*_ORIGINAL_SHARED_FIELDS, *DEFAULT_SPECIAL_TOKEN_IDS)
        if original.get(key) is not None
    }
    if "language_config" in original:
        text = copy.deepcopy(original["language_config"])
        text.pop("model_type", None)
        text.pop("transformers_version", None)
        kwargs["text_config"] = text
    dtype = original.get("dtype") or original.get("torch_dtype")
    if dtype:
        kwargs["dtype"] = dtype
    return kwargs
