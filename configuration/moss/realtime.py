"""Configuration of MOSS-TTS-Realtime: text streams in, audio frames stream out.

A backbone row holds ``1 + n_vq`` ids: column 0 a text token, columns ``1..n_vq`` one id per codebook in
``[0, audio_vocab_size)`` (``codebook_size`` real codes, then the audio pad, BOS and EOS ids). The Qwen3 backbone
(``text_config``) reads the sum of the row's 17 embeddings; a small causal Qwen3-style "local" transformer with RoPE
(``local_config``) turns the backbone's last hidden state into the next frame, codebook by codebook.
"""

from __future__ import annotations

import copy
from typing import Any

from transformers import PretrainedConfig, Qwen3Config

__all__ = ["QWEN3_1_7B_REALTIME_BACKBONE", "REALTIME_LOCAL_DEFAULTS", "CodecTTSRealtimeConfig"]

# Backbone of the released MOSS-TTS-Realtime (Qwen3-1.7B).
QWEN3_1_7B_REALTIME_BACKBONE = {
    "vocab_size": 151936,
    "hidden_size": 2048,
    "intermediate_size": 6144,
    "num_hidden_layers": 28,
    "num_attention_heads": 16,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "hidden_act": "silu",
    "max_position_embeddings": 40960,
    "rms_norm_eps": 1e-6,
    "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0},
    "attention_bias": False,
    "tie_word_embeddings": False,
    "pad_token_id": 151643,
}
# The original local (depth) transformer defaults (its config class: 4 Qwen3 layers, RoPE over 16 positions).
REALTIME_LOCAL_DEFAULTS = {
    "vocab_size": 1027,
    "hidden_size": 2048,
    "intermediate_size": 6144,
    "num_hidden_layers": 4,
    "num_attention_heads": 16,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "hidden_act": "silu",
    "max_position_embeddings": 33,
    "rms_norm_eps": 1e-6,
    "rope_parameters": {"rope_type": "linear", "rope_theta": 1000000.0, "factor": 1.0},
    "attention_bias": False,
    "tie_word_embeddings": False,
    "pad_token_id": 1024,
}
# Fields of a Qwen3 config dict we keep (bookkeeping such as model_type / transformers_version is dropped).
_DROP_SUBCONFIG_KEYS = ("model_type", "transformers_version", "rvq", "audio_vocab_size", "audio_pad_token")


def _qwen3_config(value: Qwen3Config | dict | None, default: dict[str, Any], name: str) -> Qwen3Config:
    if value is None:
        return Qwen3Config(**copy.deepcopy(default))
    if isinstance(value, Qwen3Config):
        return value
    if isinstance(value, dict):
        value = {k: v for k, v in value.items() if k not in _DROP_SUBCONFIG_KEYS}
        # the original local config repeats rope_theta / rope_type beside rope_parameters
        if "rope_parameters" in value:
            value.pop("rope_theta", None)
            value.pop("rope_type", None)
        return Qwen3Config(**value)
    raise TypeError(f"{name} must be a Qwen3Config or a dict, got {type(value).__name__}")


class CodecTTSRealtimeConfig(PretrainedConfig):
    r"""Configuration of [`CodecTTSRealtimeForConditionalGeneration`] (MOSS-TTS-Realtime compatible).

    Args:
        text_config (`Qwen3Config` or `dict`, *optional*): the backbone (default: the release's Qwen3-1.7B).
            ``language_config`` (the original name) is accepted as an alias. ``text_config.pad_token_id`` is the text
            padding row (zero in the converted checkpoint, as the original zeroes it at load).
        local_config (`Qwen3Config` or `dict`, *optional*): the local transformer (layers, heads, head_dim, FFN width,
            RoPE). Its ``hidden_size`` must equal the backbone's (the backbone state is local position 0 as is).
            Both are real sub-configs: ``attn_implementation`` / ``dtype`` given to ``from_pretrained`` reach them.
        n_vq (`int`, defaults to 16): codebooks per frame (the original ``rvq``).
        codebook_size (`int`, defaults to 1024): real codes per codebook (``0..codebook_size-1``).
        audio_pad_code, audio_bos_code, audio_eos_code (`int`, defaults to 1024 / 1025 / 1026): the empty-cell id,
            the id that marks "frame 0 is predicted from this row" and the stop id (codebook 0).
        audio_vocab_size (`int`, defaults to 1027): rows of every audio embedding / outputs of every local head.
        text_pad_token_id (`int`, defaults to 151655): ``<|text_pad|>``, fed once the text is exhausted.
        audio_placeholder_token_id (`int`, defaults to 151654): ``<|audio_pad|>``, the text id of voice-prompt rows.
        text_lead (`int`, defaults to 12): how many text tokens run ahead of the audio.
        sampling_rate (`int`, defaults to 24000), frame_rate (`float`, defaults to 12.5): the codec's rates.
        initializer_range (`float`, defaults to 0.02): std of the normal init of new weights.
    """

    model_type = "codectts_moss_tts_realtime"
    sub_configs = {"text_config": Qwen3Config, "local_config": Qwen3Config}
    keys_to_ignore_at_inference = ["past_key_values", "cache"]

    def __init__(
        self,
        text_config: Qwen3Config | dict | None = None,
        local_config: Qwen3Config | dict | None = None,
        n_vq: int = 16,
        codebook_size: int = 1024,
        audio_pad_code: int = 1024,
        audio_bos_code: int = 1025,
        audio_eos_code: int = 1026,
        audio_vocab_size: int = 1027,
        text_pad_token_id: int = 151655,
        audio_placeholder_token_id: int = 151654,
        text_lead: int = 12,
        sampling_rate: int = 24000,
        frame_rate: float = 12.5,
        initializer_range: float = 0.02,
        **kwargs,
    ):
        language_config = kwargs.pop("language_config", None)
        self.text_config = _qwen3_config(
            text_config if text_config is not None else language_config, QWEN3_1_7B_REALTIME_BACKBONE, "text_config"
        )
        self.local_config = _qwen3_config(local_config, REALTIME_LOCAL_DEFAULTS, "local_config")
        self.n_vq = int(n_vq)
        self.codebook_size = int(codebook_size)
        self.audio_pad_code = int(audio_pad_code)
        self.audio_bos_code = int(audio_bos_code)
        self.audio_eos_code = int(audio_eos_code)
        self.audio_vocab_size = int(audio_vocab_size)
        self.text_pad_token_id = int(text_pad_token_id)
        self.audio_placeholder_token_id = int(audio_placeholder_token_id)
        self.text_lead = int(text_lead)
        self.sampling_rate = int(sampling_rate)
        self.frame_rate = float(frame_rate)
        self.initializer_range = float(initializer_range)
        self._validate()
        kwargs.setdefault("tie_word_embeddings", False)
        super().__init__(**kwargs)

    def _validate(self) -> None:
        if self.n_vq < 1:
            raise ValueError(f"n_vq must be >= 1, got {self.n_vq}")
        special = (self.audio_pad_code, self.audio_bos_code, self.audio_eos_code)
        if len(set(special)) != 3 or min(special) < self.codebook_size or max(special) >= self.audio_vocab_size:
            raise ValueError(
                "audio_pad_code, audio_bos_code and audio_eos_code must be distinct ids in "
                f"[codebook_size={self.codebook_size}, audio_vocab_size={self.audio_vocab_size}), got {special}"
            )
        if self.local_config.hidden_size != self.text_config.hidden_size:
            raise ValueError(
                f"local_config.hidden_size ({self.local_config.hidden_size}) must equal the backbone hidden size "
                f"({self.text_config.hidden_size}): the backbone state is the local transformer's first input"
            )
        if self.text_lead < 1:
            raise ValueError(f"text_lead must be >= 1, got {self.text_lead}")

    # sizes mirrored for generic code
    @property
    def hidden_size(self) -> int:
        return self.text_config.hidden_size

    @property
    def vocab_size(self) -> int:
        return self.text_config.vocab_size

    @property
    def language_config(self) -> Qwen3Config:
        """Alias of `text_config` under the original name."""
        return self.text_config

    @property
    def text_padding_idx(self) -> int | None:
        """Text-embedding row that the original zeroes at load (``text_config.pad_token_id``)."""
        return self.text_config.pad_token_id

    @property
    def num_channels(self) -> int:
        """Ids per backbone row: 1 text + ``n_vq`` audio."""
        return 1 + self.n_vq

    @classmethod
    def from_original_config(cls, original: dict[str, Any], **overrides) -> CodecTTSRealtimeConfig:
        """Build the config from an original MOSS-TTS-Realtime ``config.json`` dict (``model_type: moss_tts_realtime``).

        The original hard-codes 16 codebooks, 1027 audio ids and pad 1024 in its local config whatever the file says
        (spec Q1); a file that disagrees is rejected rather than silently reinterpreted.
        """
        if "language_config" not in original:
            raise ValueError("not a MOSS-TTS-Realtime config: missing 'language_config'")
        local = dict(original.get("local_config") or {})
        for key, expected in (("rvq", 16), ("audio_vocab_size", 1027), ("audio_pad_token", 1024)):
            for where, source in (("config", original), ("local_config", local)):
                if source.get(key) is not None and int(source[key]) != expected:
                    raise ValueError(
                        f"{where}.{key}={source[key]} but MOSS-TTS-Realtime is built for {key}={expected} (the "
                        "original overrides it): this checkpoint cannot be converted faithfully"
                    )
        kwargs: dict[str, Any] = dict(
            text_config=original["language_config"],
            local_config=local or None,
            n_vq=16,
            audio_vocab_size=1027,
            audio_pad_code=1024,
            text_pad_token_id=original.get("text_pad", 151655),
            audio_placeholder_token_id=original.get("reference_audio_pad", 151654),
            initializer_range=original.get("initializer_range", 0.02),
        )
        dtype = original.get("dtype") or original.get("torch_dtype")
        if dtype:
            kwargs["dtype"] = dtype
        kwargs.update(overrides)
        return cls(**kwargs)
