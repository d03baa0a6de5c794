"""Configuration of the local-transformer RVQ generator (MOSS-TTS-Local 1.0 compatible)."""

from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig
from transformers.models.qwen3 import Qwen3Config

from .common import DEFAULT_SPECIAL_TOKEN_IDS, CodecTTSGeneratorConfigMixin, original_generator_kwargs

# Backbone of the released MOSS-TTS-Local-Transformer (Qwen3-1.7B with the padded MOSS-TTS text vocabulary).
QWEN3_1_7B_BACKBONE = {
    "vocab_size": 155648,
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
}


class CodecTTSLocalConfig(CodecTTSGeneratorConfigMixin, PretrainedConfig):
    r"""Configuration of [`CodecTTSLocalForConditionalGeneration`].

    A row of the token matrix has ``1 + n_vq`` channels: channel 0 is a text token, channels ``1..n_vq`` are RVQ codes
    in ``[0, audio_vocab_size)`` or the pad code ``audio_pad_code``. A Qwen3 backbone (``text_config``) turns the summed
    channel embeddings of every row into one latent; a small position-free causal "local" transformer then predicts the
    next row channel by channel (text first, then codebooks ``0..n_vq-1``).

    Args:
        text_config (`dict` or `Qwen3Config`, *optional*):
            The backbone (default: the released model's Qwen3-1.7B backbone, vocabulary 155648). Stored as a proper
            sub-config, so ``attn_implementation`` and ``dtype`` given to ``from_pretrained`` reach it.
            ``language_config`` (the original name) is accepted as an alias.
        local_num_layers (`int`, defaults to 4): depth of the local transformer.
        local_hidden_size (`int`, defaults to 1536): width of the local transformer.
        local_intermediate_size (`int`, defaults to 8960): MLP width of the local transformer.
            The local attention inherits ``num_attention_heads``, ``num_key_value_heads``, ``head_dim``,
            ``rms_norm_eps`` and ``attention_bias`` from ``text_config`` (as the released checkpoints do).
        adapter_intermediate_size (`int`, defaults to 2048): inner width of the SwiGLU adapters between the
            backbone width and the local width (original name ``additional_mlp_ffn_hidden_size``).
        n_vq (`int`, defaults to 32): number of RVQ codebooks modelled.
        audio_vocab_size (`int`, defaults to 1024): codes per codebook; audio embeddings/heads have one more row.
        audio_pad_code (`int`, *optional*): the pad code of the audio channels; must equal (and defaults to)
            ``audio_vocab_size``.
        head_norm_eps (`float`, defaults to 1e-6): epsilon of the RMSNorm before every head.
        channelwise_loss_weight (`list[float]`, *optional*): default per-channel loss weights (length ``1 + n_vq``).
        pad_token_id, im_start_token_id, im_end_token_id, audio_start_token_id, audio_end_token_id,
        audio_user_slot_token_id, audio_assistant_gen_slot_token_id, audio_assistant_delay_slot_token_id (`int`):
            text token ids of the MOSS-TTS tokenizer. ``audio_end_token_id`` ends generation.
        sampling_rate (`int`, defaults to 24000): sample rate of the codec the codes belong to.
        frame_rate (`float`, defaults to 12.5): codec frames per second (used for real-time factors).
        initializer_range (`float`, defaults to 0.02): std of the normal init of new weights.
    """

    model_type = "codectts_local"
    sub_configs = {"text_config": Qwen3Config}
    keys_to_ignore_at_inference = ["cache", "past_key_values"]

    def __init__(
        self,
        text_config: dict | Qwen3Config | None = None,
        local_num_layers: int = 4,
        local_hidden_size: int = 1536,
        local_intermediate_size: int = 8960,
        adapter_intermediate_size: int = 2048,
        n_vq: int = 32,
        audio_vocab_size: int = 1024,
        audio_pad_code: int | None = None,
        head_norm_eps: float = 1e-6,
        channelwise_loss_weight: list[float] | None = None,
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
        if channelwise_loss_weight is not None and len(channelwise_loss_weight) != 1 + n_vq:
            raise ValueError(
                f"channelwise_loss_weight needs 1 + n_vq = {1 + n_vq} entries, got {len(channelwise_loss_weight)}"
            )
        self.local_num_layers = local_num_layers
        self.local_hidden_size = local_hidden_size
        self.local_intermediate_size = local_intermediate_size
        self.adapter_intermediate_size = adapter_intermediate_size
        self.head_norm_eps = head_norm_eps
        self.channelwise_loss_weight = None if channelwise_loss_weight is None else list(channelwise_loss_weight)
        self._init_generator_config(
            text_config=text_config,
            default_text_config=QWEN3_1_7B_BACKBONE,
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

    @property
    def local_head_dim(self) -> int:
        return self.text_config.head_dim or self.text_config.hidden_size // self.text_config.num_attention_heads

    @classmethod
    def from_original_config(cls, original: dict[str, Any], **overrides) -> CodecTTSLocalConfig:
        """Build the config from an original MOSS-TTS-Local 1.0 ``config.json`` dict.

        The original says ``model_type: "moss_tts_delay"`` like the Delay model; it is recognised by its ``local_*``
        fields (see ``codectts.conversion.detect_checkpoint_kind``).
        """
        required = ("language_config", "local_num_layers", "local_hidden_size", "local_ffn_hidden_size", "n_vq")
        missing = [k for k in required if k not in original]
        if missing:
            raise ValueError(f"not a MOSS-TTS-Local 1.0 config: missing fields {missing}")
        kwargs = original_generator_kwargs(original)
        kwargs.update(
            local_num_layers=original["local_num_layers"],
            local_hidden_size=original["local_hidden_size"],
            local_intermediate_size=original["local_ffn_hidden_size"],
            adapter_intermediate_size=original.get("additional_mlp_ffn_hidden_size", 2048),
        )
        kwargs.update(overrides)
        return cls(**kwargs)


__all__ = ["QWEN3_1_7B_BACKBONE", "CodecTTSLocalConfig"]
