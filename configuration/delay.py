"""Configuration of the delay-pattern RVQ generator (MOSS-TTS Delay compatible)."""

from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig, Qwen3Config

__all__ = ["CodecTTSDelayConfig", "DELAY_GENERATION_PRESETS"]


# Recommended decoding settings of the released checkpoints (MOSS-TTS model cards). The text channel uses the
# original `generate` defaults (temperature 1.5, top-k 50, top-p 1.0) for every release.
DELAY_GENERATION_PRESETS: dict[str, dict[str, Any]] = {
    "moss-tts": dict(audio_temperature=1.7, audio_top_p=0.8, audio_top_k=25, audio_repetition_penalty=1.0),
    "moss-ttsd": dict(audio_temperature=1.1, audio_top_p=0.9, audio_top_k=50, audio_repetition_penalty=1.1),
    "moss-voice-generator": dict(audio_temperature=1.5, audio_top_p=0.6, audio_top_k=50, audio_repetition_penalty=1.1),
    "moss-sound-effect": dict(audio_temperature=1.5, audio_top_p=0.6, audio_top_k=50, audio_repetition_penalty=1.2),
}
_TEXT_SAMPLING_DEFAULTS = dict(do_sample=True, temperature=1.5, top_k=50, top_p=1.0)
# audio settings shared by every preset: sample audio like text; penalty history per sequence and codebook
_AUDIO_SAMPLING_DEFAULTS = dict(audio_do_sample=None, audio_repetition_penalty_scope="sequence")

# Token ids of the MOSS-TTS tokenizer (Qwen3 BPE with renamed specials); only used as defaults.
_DEFAULT_TOKEN_IDS = dict(
    pad_token_id=151643,
    im_start_token_id=151644,
    im_end_token_id=151645,
    audio_start_token_id=151652,
    audio_end_token_id=151653,
    audio_user_slot_token_id=151654,
    audio_assistant_gen_slot_token_id=151656,
    audio_assistant_delay_slot_token_id=151662,
)


class CodecTTSDelayConfig(PretrainedConfig):
    r"""Configuration of [`CodecTTSDelayForConditionalGeneration`].

    Every row of the model's input is ``1 + n_vq`` tokens: a text token (column 0) and one code per RVQ codebook,
    where codebook ``j`` is delayed by ``j`` rows (see `codectts.modeling.delay_pattern`).

    Args:
        text_config (`Qwen3Config` or `dict`, *optional*):
            The Qwen3 backbone. Stored as a real sub-config, so `attn_implementation` and `dtype` given to
            `from_pretrained` reach it. `language_config` (the original name) is accepted as an alias.
        n_vq (`int`, defaults to 32): number of RVQ codebooks (audio channels).
        audio_vocab_size (`int`, defaults to 1024): codes per codebook. Audio embeddings and heads have
            `audio_vocab_size + 1` rows; the extra row is the audio pad.
        audio_pad_code (`int`, *optional*): code of the audio pad (defaults to `audio_vocab_size`).
        pad_token_id, im_start_token_id, im_end_token_id, audio_start_token_id, audio_end_token_id,
        audio_user_slot_token_id, audio_assistant_gen_slot_token_id, audio_assistant_delay_slot_token_id (`int`):
            special text tokens; `im_end_token_id` ends generation.
        sampling_rate (`int`, defaults to 24000): sample rate of the codec the codes belong to.
        frame_rate (`float`, defaults to 12.5): codec frames per second (one generated row per frame).
        initializer_range (`float`, defaults to 0.02): std of the initial audio embeddings and heads.
    """

    model_type = "codectts_delay"
    sub_configs = {"text_config": Qwen3Config}
    keys_to_ignore_at_inference = ["past_key_values"]

    def __init__(
        self,
        text_config: Qwen3Config | dict | None = None,
        n_vq: int = 32,
        audio_vocab_size: int = 1024,
        audio_pad_code: int | None = None,
        pad_token_id: int = _DEFAULT_TOKEN_IDS["pad_token_id"],
        im_start_token_id: int = _DEFAULT_TOKEN_IDS["im_start_token_id"],
        im_end_token_id: int = _DEFAULT_TOKEN_IDS["im_end_token_id"],
        audio_start_token_id: int = _DEFAULT_TOKEN_IDS["audio_start_token_id"],
        audio_end_token_id: int = _DEFAULT_TOKEN_IDS["audio_end_token_id"],
        audio_user_slot_token_id: int = _DEFAULT_TOKEN_IDS["audio_user_slot_token_id"],
        audio_assistant_gen_slot_token_id: int = _DEFAULT_TOKEN_IDS["audio_assistant_gen_slot_token_id"],
        audio_assistant_delay_slot_token_id: int = _DEFAULT_TOKEN_IDS["audio_assistant_delay_slot_token_id"],
        sampling_rate: int = 24000,
        frame_rate: float = 12.5,
        initializer_range: float = 0.02,
        **kwargs,
    ):
        language_config = kwargs.pop("language_config", None)
        if text_config is None:
            text_config = language_config
        if text_config is None:
            text_config = Qwen3Config()
        elif isinstance(text_config, dict):
            text_config = Qwen3Config(**{k: v for k, v in text_config.items() if k != "model_type"})
        elif not isinstance(text_config, Qwen3Config):
            raise TypeError(f"text_config must be a Qwen3Config or a dict, got {type(text_config).__name__}")
        self.text_config = text_config

        if n_vq < 1:
            raise ValueError(f"n_vq must be >= 1, got {n_vq}")
        if audio_vocab_size < 1:
            raise ValueError(f"audio_vocab_size must be >= 1, got {audio_vocab_size}")
        self.n_vq = int(n_vq)
        self.audio_vocab_size = int(audio_vocab_size)
        self.audio_pad_code = int(audio_vocab_size if audio_pad_code is None else audio_pad_code)
        if not 0 <= self.audio_pad_code <= self.audio_vocab_size:
            raise ValueError(f"audio_pad_code must be in [0, {self.audio_vocab_size}], got {self.audio_pad_code}")
        self.im_start_token_id = im_start_token_id
        self.im_end_token_id = im_end_token_id
        self.audio_start_token_id = audio_start_token_id
        self.audio_end_token_id = audio_end_token_id
        self.audio_user_slot_token_id = audio_user_slot_token_id
        self.audio_assistant_gen_slot_token_id = audio_assistant_gen_slot_token_id
        self.audio_assistant_delay_slot_token_id = audio_assistant_delay_slot_token_id
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
        return self.text_config.hidden_size

    @property
    def vocab_size(self) -> int:
        return self.text_config.vocab_size

    @property
    def language_config(self) -> Qwen3Config:
        """Alias of `text_config` under the original MOSS-TTS name."""
        return self.text_config

    @property
    def audio_num_embeddings(self) -> int:
        """Rows of every audio embedding table / outputs of every audio head (codes + pad)."""
        return self.audio_vocab_size + 1

    def get_text_config(self, *args, **kwargs) -> Qwen3Config:
        return self.text_config

    @classmethod
    def from_original_config(cls, original: dict[str, Any], **overrides) -> CodecTTSDelayConfig:
        """Build from the `config.json` dict of an original MOSS-TTS Delay checkpoint (`model_type moss_tts_delay`).

        Raises:
            ValueError: the dict describes a MOSS-TTS-Local checkpoint (it has `local_*` fields) or lacks
                `language_config`.
        """
        if any(key.startswith("local_") for key in original):
            raise ValueError("this is a MOSS-TTS-Local config (it has local_* fields), not a Delay config")
        if "language_config" not in original:
            raise ValueError("an original MOSS-TTS Delay config needs a 'language_config' entry")
        fields = [
            "n_vq", "audio_vocab_size", "audio_pad_code", "sampling_rate", "initializer_range", *_DEFAULT_TOKEN_IDS,
        ]  # fmt: skip
        kwargs = {key: original[key] for key in fields if key in original}
        kwargs["text_config"] = dict(original["language_config"])
        if "dtype" in original or "torch_dtype" in original:
            kwargs["dtype"] = original.get("dtype", original.get("torch_dtype"))
        kwargs.update(overrides)
        return cls(**kwargs)


def delay_generation_defaults(preset: str = "moss-tts") -> dict[str, Any]:
    """Text + audio sampling settings of a released model (keys of :data:`DELAY_GENERATION_PRESETS`)."""
    if preset not in DELAY_GENERATION_PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(DELAY_GENERATION_PRESETS)}")
    return {**_TEXT_SAMPLING_DEFAULTS, **_AUDIO_SAMPLING_DEFAULTS, **DELAY_GENERATION_PRESETS[preset]}
