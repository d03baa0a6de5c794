"""Configurations of MetaVoice-1B: the causal first stage, the non-causal second stage, the speaker encoder and the
composite text-to-speech model that bundles them (plus an optional EnCodec codec)."""

from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig

__all__ = [
    "MetaVoiceConfig",
    "MetaVoiceFirstStageConfig",
    "MetaVoiceSecondStageConfig",
    "MetaVoiceSpeakerEncoderConfig",
]


def _swiglu_hidden(hidden_size: int, multiple_of: int) -> int:
    # the original rounds int(2 * 4C / 3) up to a multiple of `swiglu_multiple_of`
    hidden = int(2 * 4 * hidden_size / 3)
    return multiple_of * ((hidden + multiple_of - 1) // multiple_of)


class MetaVoiceFirstStageConfig(PretrainedConfig):
    r"""Configuration of [`MetaVoiceFirstStageModel`], the causal GPT over the flattened, interleaved stream of
    EnCodec codebooks 0 and 1.

    Token layout (defaults = the released checkpoint): ``0..codebook_size-1`` codebook-0 codes,
    ``codebook_size..2*codebook_size-1`` codebook-1 codes (``+codebook_size``), ``end_of_audio_token_id``
    (``2*codebook_size``), text BPE ranks from ``text_offset`` (``end_of_audio_token_id + 1``) and the end-of-text
    id ``end_of_text_token_id`` (last id of the vocabulary).

    Args:
        vocab_size (`int`, defaults to 2562): size of the single token stream (embedding and tied head).
        hidden_size (`int`, defaults to 2048), num_hidden_layers (`int`, defaults to 24),
        num_attention_heads (`int`, defaults to 16): transformer sizes (head dim = hidden / heads, no GQA).
        intermediate_size (`int`, *optional*): SwiGLU width; default from `swiglu_multiple_of` as in the original.
        max_position_embeddings (`int`, defaults to 2048): learned absolute positions = the context (prompt plus
            generated tokens).
        rms_norm_eps (`float`, defaults to 1e-5): RMSNorm epsilon.
        speaker_embedding_dim (`int`, defaults to 256): size of the speaker d-vector (its projection is added at
            every position).
        codebook_size (`int`, defaults to 1024): EnCodec codebook size.
        end_of_audio_token_id, end_of_text_token_id, text_offset (`int`, *optional*): derived from `codebook_size`
            and `vocab_size` when not given.
    """

    model_type = "codectts_metavoice_first_stage"

    def __init__(
        self,
        vocab_size: int = 2562,
        hidden_size: int = 2048,
        num_hidden_layers: int = 24,
        num_attention_heads: int = 16,
        intermediate_size: int | None = None,
        swiglu_multiple_of: int = 256,
        max_position_embeddings: int = 2048,
        rms_norm_eps: float = 1e-5,
        speaker_embedding_dim: int = 256,
        codebook_size: int = 1024,
        end_of_audio_token_id: int | None = None,
        end_of_text_token_id: int | None = None,
        text_offset: int | None = None,
        attention_dropout: float = 0.0,
        initializer_range: float = 0.02,
        tie_word_embeddings: bool = True,
        **kwargs,
    ):
        if hidden_size % num_attention_heads:
            raise ValueError(
                f"hidden_size {hidden_size} must be divisible by num_attention_heads {num_attention_heads}"
            )
        self.vocab_size = int(vocab_size)
        self.hidden_size = int(hidden_size)
        self.num_hidden_layers = int(num_hidden_layers)
        self.num_attention_heads = int(num_attention_heads)
        self.num_key_value_heads = int(num_attention_heads)
        self.head_dim = self.hidden_size // self.num_attention_heads
        self.swiglu_multiple_of = int(swiglu_multiple_of)
        self.intermediate_size = int(intermediate_size or _swiglu_hidden(self.hidden_size, self.swiglu_multiple_of))
        self.max_position_embeddings = int(max_position_embeddings)
        self.rms_norm_eps = float(rms_norm_eps)
        self.speaker_embedding_dim = int(speaker_embedding_dim)
        self.codebook_size = int(codebook_size)
        self.end_of_audio_token_id = int(2 * codebook_size if end_of_audio_token_id is None else end_of_audio_token_id)
        self.text_offset = int(self.end_of_audio_token_id + 1 if text_offset is None else text_offset)
        self.end_of_text_token_id = int(vocab_size - 1 if end_of_text_token_id is None else end_of_text_token_id)
        self.attention_dropout = float(attention_dropout)
        self.initializer_range = float(initializer_range)
        # read by transformers' LlamaMLP (SwiGLU without biases)
        self.hidden_act = "silu"
        self.mlp_bias = False
        kwargs.pop("hidden_act", None)
        kwargs.pop("mlp_bias", None)
        kwargs.setdefault("eos_token_id", self.end_of_audio_token_id)
        kwargs.setdefault("pad_token_id", self.end_of_audio_token_id)
        super().__init__(tie_word_embeddings=tie_word_embeddings, **kwargs)
        if not self.end_of_audio_token_id < self.text_offset <= self.end_of_text_token_id < self.vocab_size:
            raise ValueError(
                "token layout must satisfy end_of_audio_token_id < text_offset <= end_of_text_token_id < vocab_size, "
                f"got {self.end_of_audio_token_id}, {self.text_offset}, {self.end_of_text_token_id}, {self.vocab_size}"
            )


class MetaVoiceSecondStageConfig(PretrainedConfig):
    r"""Configuration of [`MetaVoiceSecondStageModel`], the non-causal transformer that predicts EnCodec codebooks
    2..7 from text + codebooks 0/1 in one forward pass.

    Args:
        vocab_sizes (`list[int]`, defaults to `[1538, 1025]`): input streams (row 0: codebook 0 + pad + text; row 1:
            codebook 1 + pad); their embeddings are summed.
        num_output_heads (`int`, defaults to 6), output_vocab_size (`int`, defaults to 1025): one head per predicted
            codebook; the last class is the pad ("no audio here").
        hidden_size (`int`, defaults to 384), num_hidden_layers (`int`, defaults to 6), num_attention_heads (`int`,
            defaults to 6), intermediate_size (`int`, *optional*, 4x hidden): GELU-MLP transformer sizes.
        block_size (`int`, defaults to 1024): every input is padded to exactly this many positions (the model has no
            padding mask; the released weights expect the padding).
        layer_norm_eps (`float`, defaults to 1e-5), speaker_embedding_dim (`int`, defaults to 256).
        codebook_size (`int`, defaults to 1024): code range; `pad_token_id` = `codebook_size`.
        text_offset (`int`, *optional*): first text id of row 0 (`codebook_size + 1`).
    """

    model_type = "codectts_metavoice_second_stage"

    def __init__(
        self,
        vocab_sizes: list[int] | None = None,
        num_output_heads: int = 6,
        output_vocab_size: int = 1025,
        hidden_size: int = 384,
        num_hidden_layers: int = 6,
        num_attention_heads: int = 6,
        intermediate_size: int | None = None,
        block_size: int = 1024,
        layer_norm_eps: float = 1e-5,
        speaker_embedding_dim: int = 256,
        codebook_size: int = 1024,
        text_offset: int | None = None,
        attention_dropout: float = 0.0,
        initializer_range: float = 0.02,
        **kwargs,
    ):
        if hidden_size % num_attention_heads:
            raise ValueError(
                f"hidden_size {hidden_size} must be divisible by num_attention_heads {num_attention_heads}"
            )
        self.vocab_sizes = [int(v) for v in (vocab_sizes or [1538, 1025])]
        self.num_output_heads = int(num_output_heads)
        self.output_vocab_size = int(output_vocab_size)
        self.hidden_size = int(hidden_size)
        self.num_hidden_layers = int(num_hidden_layers)
        self.num_attention_heads = int(num_attention_heads)
        self.head_dim = self.hidden_size // self.num_attention_heads
        self.intermediate_size = int(intermediate_size or 4 * self.hidden_size)
        self.block_size = int(block_size)
        self.max_position_embeddings = self.block_size
        self.layer_norm_eps = float(layer_norm_eps)
        self.speaker_embedding_dim = int(speaker_embedding_dim)
        self.codebook_size = int(codebook_size)
        self.text_offset = int(self.codebook_size + 1 if text_offset is None else text_offset)
        self.attention_dropout = float(attention_dropout)
        self.initializer_range = float(initializer_range)
        kwargs.setdefault("pad_token_id", self.codebook_size)
        kwargs.setdefault("tie_word_embeddings", False)
        super().__init__(**kwargs)

    @property
    def end_of_text_token_id(self) -> int:
        return self.vocab_sizes[0] - 1


class MetaVoiceSpeakerEncoderConfig(PretrainedConfig):
    r"""Configuration of [`MetaVoiceSpeakerEncoder`] (GE2E-style LSTM d-vector) and its mel front-end.

    Args:
        mel_n_channels (`int`, defaults to 40), hidden_size (`int`, defaults to 256), embedding_size (`int`,
            defaults to 256), num_layers (`int`, defaults to 3): LSTM(mel -> hidden, layers) + Linear(hidden ->
            embedding) + ReLU, L2-normalised.
        sampling_rate (`int`, defaults to 16000), n_fft (`int`, defaults to 400), hop_length (`int`, defaults to
            160), partials_n_frames (`int`, defaults to 160), partial_rate (`float`, defaults to 1.3),
            min_coverage (`float`, defaults to 0.75), trim_top_db (`float`, defaults to 20): the front-end.
    """

    model_type = "codectts_metavoice_speaker_encoder"

    def __init__(
        self,
        mel_n_channels: int = 40,
        hidden_size: int = 256,
        embedding_size: int = 256,
        num_layers: int = 3,
        sampling_rate: int = 16000,
        n_fft: int = 400,
        hop_length: int = 160,
        partials_n_frames: int = 160,
        partial_rate: float = 1.3,
        min_coverage: float = 0.75,
        trim_top_db: float = 20.0,
        **kwargs,
    ):
        self.mel_n_channels = int(mel_n_channels)
        self.hidden_size = int(hidden_size)
        self.embedding_size = int(embedding_size)
        self.num_layers = int(num_layers)
        self.sampling_rate = int(sampling_rate)
        self.n_fft = int(n_fft)
        self.hop_length = int(hop_length)
        self.partials_n_frames = int(partials_n_frames)
        self.partial_rate = float(partial_rate)
        self.min_coverage = float(min_coverage)
        self.trim_top_db = float(trim_top_db)
        super().__init__(**kwargs)


def _sub(value, cls):
    if value is None:
        return cls()
    if isinstance(value, dict):
        return cls(**{k: v for k, v in value.items() if k != "model_type"})
    if isinstance(value, cls):
        return value
    raise TypeError(f"expected a {cls.__name__} or a dict, got {type(value).__name__}")


class MetaVoiceConfig(PretrainedConfig):
    r"""Configuration of [`MetaVoiceForTextToSpeech`]: the three networks and, optionally, the EnCodec codec that
    turns the 8 codebooks into 24 kHz audio.

    Args:
        first_stage_config, second_stage_config, speaker_encoder_config (config or `dict`, *optional*).
        codec_config (`EncodecConfig` or `dict`, *optional*): present when the folder bundles a codec.
        num_codebooks (`int`, defaults to 8): codebooks per frame given to the codec (2 + second-stage heads).
        sampling_rate (`int`, defaults to 24000), frame_rate (`float`, defaults to 75.0): the codec's rates.
    """

    model_type = "codectts_metavoice"
    sub_configs = {
        "first_stage_config": MetaVoiceFirstStageConfig,
        "second_stage_config": MetaVoiceSecondStageConfig,
        "speaker_encoder_config": MetaVoiceSpeakerEncoderConfig,
    }

    def __init__(
        self,
        first_stage_config: Any = None,
        second_stage_config: Any = None,
        speaker_encoder_config: Any = None,
        codec_config: Any = None,
        sampling_rate: int = 24000,
        frame_rate: float = 75.0,
        **kwargs,
    ):
        self.first_stage_config = _sub(first_stage_config, MetaVoiceFirstStageConfig)
        self.second_stage_config = _sub(second_stage_config, MetaVoiceSecondStageConfig)
        self.speaker_encoder_config = _sub(speaker_encoder_config, MetaVoiceSpeakerEncoderConfig)
        if codec_config is not None and not isinstance(codec_config, dict):
            codec_config = codec_config.to_dict()
        self.codec_config = codec_config
        self.sampling_rate = int(sampling_rate)
        self.frame_rate = float(frame_rate)
        self.num_codebooks = 2 + self.second_stage_config.num_output_heads
        super().__init__(**kwargs)
        fs, ss, se = self.first_stage_config, self.second_stage_config, self.speaker_encoder_config
        if not fs.speaker_embedding_dim == ss.speaker_embedding_dim == se.embedding_size:
            raise ValueError(
                "the speaker embedding sizes must agree: first stage "
                f"{fs.speaker_embedding_dim}, second stage {ss.speaker_embedding_dim}, encoder {se.embedding_size}"
            )
        if fs.codebook_size != ss.codebook_size:
            raise ValueError(f"codebook sizes differ: first stage {fs.codebook_size}, second {ss.codebook_size}")

    def get_text_config(self, *args, **kwargs):
        return self.first_stage_config

    def to_dict(self) -> dict[str, Any]:
        output = super().to_dict()
        output.pop("num_codebooks", None)
        return output
