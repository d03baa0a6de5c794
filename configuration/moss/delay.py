"""Configuration of the delay-pattern RVQ generator (MOSS-TTS Delay compatible)."""

from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig, Qwen3Config

from .common import DEFAULT_SPECIAL_TOKEN_IDS, CodecTTSGeneratorConfigMixin, original_generator_kwargs

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


class CodecTTSDelayConfig(CodecTTSGeneratorConfigMixin, PretrainedConfig):
    r"""Configuration of [`CodecTTSDelayForConditionalGeneration`].

    Every row of the model's input is ``1 + n_vq`` tokens: a text token (column 0) and one code per RVQ codebook,
    where codebook ``j`` is delayed by ``j`` rows (see `codectts.modeling.moss.delay_pattern`).

    Args:
        text_config (`Qwen3Config` or `dict`, *optional*):
            The Qwen3 backbone. Stored as a real sub-config, so `attn_implementation` and `dtype` given to
            `from_pretrained` reach it. `language_config` (the original name) is accepted as an alias.
        n_vq (`int`, defaults to 32): number of RVQ codebooks (audio channels).
        audio_vocab_size (`int`, defaults to 1024): codes per codebook. Audio embeddings and heads have
            `audio_vocab_size + 1` rows; the extra row is the audio pad.
        audio_pad_code (`int`, *optional*): code of the audio pad; must equal (and defaults to) `audio_vocab_size`.
        pad_token_id, im_start_token_id, im_end_token_id, audio_start_token_id, audio_end_token_id,
        audio_user_slot_token_id, audio_assistant_gen_slot_token_id, audio_assistant_delay_slot_token_id (`int`):
            special text tokens; `im_end_token_id` ends generation.
        sampling_rate (`int`, defaults to 24000): sample rate of the codec the codes belong to.
        frame_rate (`float`, defaults to 12.5): codec frames per second (one generated row per frame).
        initializer_range (`float`, defaults to 0.02): std of the initial audio embeddings and heads.
    """

    model_type = "codectts_delay"
    sub_configs = {"text_config": Qwen3Config}
    keys_to_ignore_at_inference = ["cache", "past_key_values"]

    def __init__(
        self,
        text_config: Qwen3Config | dict | None = None,
        n_vq: int = 32,
        audio_vocab_size: int = 1024,
        audio_pad_code: int | None = None,
        pad_token_id: int = DEFAULT_SPECIAL_TOKEN_IDS["pad_token_id"],
        im_start_token_id: int = DEFAULT_SPECIAL_TOKEN_IDS["im_start_token_id"],
        im_end_token_id: int = DEFAULT_SPECIAL_TOKEN_IDS["im_end_token_id"],
        audio_start_token_id: int = DEFAULT_SPECIAL_TOKEN_IDS["audio_start_token_id"],
        audio_end_token_id: int = DEFAULT_SPECIAL_TOKEN_IDS["audio_end_token_id"],
        audio_user_slot_token_id: int = DEFAULT_SPECIAL_TOKEN_IDS["audio_user_slot_token_id"],
        audio_assistant_gen_slot_token_id: int = DEFAULT_SPECIAL_TOKEN_IDS["audio_assistant_gen_slot_token_id"],
        audio_assistant_delay_slot_token_id: int = DEFAULT_SPECIAL_TOKEN_IDS["audio_assistant_delay_slot_token_id"],
        sampling_rate: int = 24000,
        frame_rate: float = 12.5,
        initializer_range: float = 0.02,
        **kwargs,
    ):
        self._init_generator_config(
            text_config=text_config,
            default_text_config={},
            n_vq=n_vq,
            audio_vocab_size=audio_vocab_size,
            audio_pad_code=audio_pad_code,
            special_token_ids=dict(
                pad_token_id=pad_token_id,
                im_start_token_id=im_start_token_id,
                im_end_token_id=im_end_token_id,
                audio_start_token_id=audio_start_token_id,
                audio_end_token_id=audio_end_token_id,
                audio_user_slot_token_id=audio_user_slot_token_id,
                audio_assistant_gen_slot_token_id=audio_assistant_gen_slot_token_id,
                audio_assistant_delay_slot_token_id=audio_assistant_delay_slot_token_id,
            ),
            sampling_rate=sampling_rate,
            frame_rate=frame_rate,
            initializer_range=initializer_range,
            **kwargs,
        )

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
        kwargs = original_generator_kwargs(original)
        kwargs.update(overrides)
        return cls(**kwargs)


def delay_generation_defaults(preset: str = "moss-tts") -> dict[str, Any]:
    """Text + audio sampling settings of a released model (keys of :data:`DELAY_GENERATION_PRESETS`)."""
    if preset not in DELAY_GENERATION_PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(DELAY_GENERATION_PRESETS)}")
    return {**_TEXT_SAMPLING_DEFAULTS, **_AUDIO_SAMPLING_DEFAULTS, **DELAY_GENERATION_PRESETS[preset]}
