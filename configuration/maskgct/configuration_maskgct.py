"""Configurations of MaskGCT (Amphion, ICLR 2025) with the official default values (``config/maskgct.json``).

Field names follow the original config keys where one exists (``hidden_size``, ``num_layers``, ``num_heads``,
``cond_codebook_size``, ``num_quantizer`` ...), so the original JSON blocks map onto them one to one
(`from_original`).
"""

from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig, Wav2Vec2BertConfig


class MaskGctSemanticCodecConfig(PretrainedConfig):
    """RepCodec: w2v-bert-2.0 layer-17 features (normalised with ``feature_mean``/``feature_var``) -> one
    factorized VQ codebook (50 Hz semantic tokens).

    Args:
        hidden_size: width of the features it quantizes (1024 for w2v-bert-2.0).
        codebook_size: number of semantic tokens (8192).
        codebook_dim: dimension of the factorized lookup space (8).
        vocos_dim / vocos_intermediate_dim / vocos_num_layers: ConvNeXt backbone of encoder and decoder.
        num_quantizers: residual VQ depth (1 in MaskGCT).
    """

    model_type = "maskgct_semantic_codec"

    def __init__(
        self,
        hidden_size: int = 1024,
        codebook_size: int = 8192,
        codebook_dim: int = 8,
        vocos_dim: int = 384,
        vocos_intermediate_dim: int = 2048,
        vocos_num_layers: int = 12,
        num_quantizers: int = 1,
        **kwargs,
    ):
        self.hidden_size = hidden_size
        self.codebook_size = codebook_size
        self.codebook_dim = codebook_dim
        self.vocos_dim = vocos_dim
        self.vocos_intermediate_dim = vocos_intermediate_dim
        self.vocos_num_layers = vocos_num_layers
        self.num_quantizers = num_quantizers
        super().__init__(**kwargs)

    @classmethod
    def from_original(cls, block: dict[str, Any]) -> MaskGctSemanticCodecConfig:
        """From the original ``model.semantic_codec`` block (downsample_scale is not supported: MaskGCT uses 1)."""
        if block.get("downsample_scale", 1) not in (None, 1):
            raise ValueError("semantic_codec.downsample_scale != 1 is not supported (MaskGCT uses 1)")
        keys = ("hidden_size", "codebook_size", "codebook_dim", "num_quantizers")
        kwargs = {k: block[k] for k in keys if k in block}
        # the original reads the two other vocos sizes only when vocos_dim is present (quirk Q-C2)
        if "vocos_dim" in block:
            kwargs["vocos_dim"] = block["vocos_dim"]
            for k in ("vocos_intermediate_dim", "vocos_num_layers"):
                if k in block:
                    kwargs[k] = block[k]
        return cls(**kwargs)


class MaskGctAcousticCodecConfig(PretrainedConfig):
    """Acoustic codec: DAC-style conv encoder (24 kHz -> 50 Hz latent), residual factorized VQ and a Vocos
    decoder (ConvNeXt backbone + ISTFT head).

    Args:
        encoder_dim: first encoder width ``d_model`` (96); doubles at every down-sampling stage.
        encoder_rates: strides of the encoder stages (``up_ratios`` [3, 4, 5, 8], hop 480).
        latent_dim: latent width (``out_channels`` 256).
        num_quantizers / codebook_size / codebook_dim: RVQ (12 x 1024, lookup dim 8).
        vocos_dim / vocos_intermediate_dim / vocos_num_layers: Vocos backbone.
        n_fft / hop_length: ISTFT head (1920 / 480, "same" padding).
        sampling_rate: 24000.
    """

    model_type = "maskgct_acoustic_codec"

    def __init__(
        self,
        encoder_dim: int = 96,
        encoder_rates: list[int] | tuple[int, ...] = (3, 4, 5, 8),
        latent_dim: int = 256,
        use_tanh: bool = False,
        num_quantizers: int = 12,
        codebook_size: int = 1024,
        codebook_dim: int = 8,
        vocos_dim: int = 512,
        vocos_intermediate_dim: int = 4096,
        vocos_num_layers: int = 30,
        n_fft: int = 1920,
        hop_length: int = 480,
        sampling_rate: int = 24000,
        **kwargs,
    ):
        self.encoder_dim = encoder_dim
        self.encoder_rates = list(encoder_rates)
        self.latent_dim = latent_dim
        self.use_tanh = use_tanh
        self.num_quantizers = num_quantizers
        self.codebook_size = codebook_size
        self.codebook_dim = codebook_dim
        self.vocos_dim = vocos_dim
        self.vocos_intermediate_dim = vocos_intermediate_dim
        self.vocos_num_layers = vocos_num_layers
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.sampling_rate = sampling_rate
        super().__init__(**kwargs)

    @property
    def frame_rate(self) -> float:
        return self.sampling_rate / self.hop_length

    @classmethod
    def from_original(cls, block: dict[str, Any]) -> MaskGctAcousticCodecConfig:
        """From the original ``model.acoustic_codec`` block ({"encoder": ..., "decoder": ...})."""
        enc, dec = block.get("encoder", {}), block.get("decoder", {})
        if dec.get("quantizer_type", "fvq") != "fvq" or not dec.get("use_vocos", True):
            raise ValueError("only the MaskGCT acoustic codec (quantizer_type 'fvq', use_vocos true) is supported")
        if dec.get("padding", "same") != "same":
            raise ValueError("only padding 'same' is supported for the acoustic decoder's ISTFT")
        kwargs: dict[str, Any] = {}
        for src, dst in (
            ("d_model", "encoder_dim"),
            ("up_ratios", "encoder_rates"),
            ("out_channels", "latent_dim"),
            ("use_tanh", "use_tanh"),
        ):
            if src in enc:
                kwargs[dst] = enc[src]
        for src, dst in (
            ("num_quantizers", "num_quantizers"),
            ("codebook_size", "codebook_size"),
            ("codebook_dim", "codebook_dim"),
            ("vocos_dim", "vocos_dim"),
            ("vocos_intermediate_dim", "vocos_intermediate_dim"),
            ("vocos_num_layers", "vocos_num_layers"),
            ("n_fft", "n_fft"),
            ("hop_size", "hop_length"),
        ):
            if src in dec:
                kwargs[dst] = dec[src]
        # the decoder's input width is read from `in_channels`, which the official config misspells (`in_channel`),
        # so the original always uses 256 (quirk Q-C1); the encoder's out_channels must match it
        in_channels = dec.get("in_channels", 256)
        if kwargs.get("latent_dim", 256) != in_channels:
            raise ValueError(
                f"encoder.out_channels ({kwargs.get('latent_dim')}) != decoder input width ({in_channels})"
            )
        return cls(**kwargs)


class _MaskGctGeneratorConfig(PretrainedConfig):
    """Shared fields of the two generators (bidirectional Llama stack with adaptive RMSNorm)."""

    def __init__(
        self,
        hidden_size: int,
        num_layers: int,
        num_heads: int,
        cond_codebook_size: int,
        intermediate_size: int | None,
        rms_norm_eps: float,
        rope_theta: float,
        cfg_scale: float,
        attention_dropout: float,
        **kwargs,
    ):
        if hidden_size % num_heads:
            raise ValueError(f"hidden_size ({hidden_size}) must be divisible by num_heads ({num_heads})")
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.cond_codebook_size = cond_codebook_size
        self.intermediate_size = intermediate_size if intermediate_size is not None else 4 * hidden_size
        self.rms_norm_eps = rms_norm_eps
        self.rope_theta = rope_theta
        self.cfg_scale = cfg_scale
        self.attention_dropout = attention_dropout
        # fixed by the architecture (fields read by transformers' Llama MLP)
        self.hidden_act = "silu"
        self.mlp_bias = False
        kwargs.pop("hidden_act", None)
        kwargs.pop("mlp_bias", None)
        super().__init__(**kwargs)

    # names transformers' attention helpers look for
    @property
    def num_attention_heads(self) -> int:
        return self.num_heads

    @property
    def num_hidden_layers(self) -> int:
        return self.num_layers

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads


class MaskGctT2SConfig(_MaskGctGeneratorConfig):
    """Text-to-semantic generator: phone prefix + prompt semantic tokens + masked target -> semantic tokens.

    Args:
        hidden_size / num_layers / num_heads: estimator size (1536 / 16 / 16; MLP 4x, head_dim hidden/heads).
        cond_codebook_size: semantic vocabulary (8192).
        phone_vocab_size: rows of the phone embedding (1024; the g2p produces ids < 363), ``phone_pad_id`` 1023.
        cfg_scale: probability of an unconditional (prompt-free) training example (0.15).
        cond_dim: stored by the original, unused.
    """

    model_type = "maskgct_t2s"

    def __init__(
        self,
        hidden_size: int = 1536,
        num_layers: int = 16,
        num_heads: int = 16,
        cond_codebook_size: int = 8192,
        phone_vocab_size: int = 1024,
        phone_pad_id: int = 1023,
        use_phone_cond: bool = True,
        cond_dim: int = 1024,
        intermediate_size: int | None = None,
        rms_norm_eps: float = 1e-6,
        rope_theta: float = 10000.0,
        cfg_scale: float = 0.15,
        attention_dropout: float = 0.0,
        **kwargs,
    ):
        self.phone_vocab_size = phone_vocab_size
        self.phone_pad_id = phone_pad_id
        self.use_phone_cond = use_phone_cond
        self.cond_dim = cond_dim
        super().__init__(
            hidden_size,
            num_layers,
            num_heads,
            cond_codebook_size,
            intermediate_size,
            rms_norm_eps,
            rope_theta,
            cfg_scale,
            attention_dropout,
            **kwargs,
        )

    @classmethod
    def from_original(cls, block: dict[str, Any]) -> MaskGctT2SConfig:
        keys = (
            "hidden_size",
            "num_layers",
            "num_heads",
            "cfg_scale",
            "cond_codebook_size",
            "cond_dim",
            "use_phone_cond",
        )
        config = cls(**{k: block[k] for k in keys if k in block})
        if not config.use_phone_cond:
            raise ValueError("t2s_model.use_phone_cond false is not supported (MaskGCT conditions on phones)")
        return config


class MaskGctS2AConfig(_MaskGctGeneratorConfig):
    """Semantic-to-acoustic generator: semantic condition (added position-wise) + acoustic prompt -> RVQ layers.

    Args:
        num_quantizer: acoustic layers this model embeds / predicts (1 for the 1-layer model, 12 for the full one).
        codebook_size: acoustic codebook size (1024).
        cond_codebook_size: semantic vocabulary (8192).
        mask_layer_schedule: training distribution of the predicted layer ("linear", "uniform").
        predict_layer_1: whether training may pick layer 0 (true for the 1-layer model, false for the full one).
    """

    model_type = "maskgct_s2a"

    def __init__(
        self,
        hidden_size: int = 1024,
        num_layers: int = 16,
        num_heads: int = 16,
        num_quantizer: int = 12,
        codebook_size: int = 1024,
        cond_codebook_size: int = 8192,
        cond_dim: int = 1024,
        mask_layer_schedule: str = "linear",
        predict_layer_1: bool = True,
        intermediate_size: int | None = None,
        rms_norm_eps: float = 1e-6,
        rope_theta: float = 10000.0,
        cfg_scale: float = 0.15,
        attention_dropout: float = 0.0,
        **kwargs,
    ):
        if mask_layer_schedule not in ("linear", "uniform"):
            raise ValueError(f"mask_layer_schedule must be 'linear' or 'uniform', got {mask_layer_schedule!r}")
        self.num_quantizer = num_quantizer
        self.codebook_size = codebook_size
        self.cond_dim = cond_dim
        self.mask_layer_schedule = mask_layer_schedule
        self.predict_layer_1 = predict_layer_1
        super().__init__(
            hidden_size,
            num_layers,
            num_heads,
            cond_codebook_size,
            intermediate_size,
            rms_norm_eps,
            rope_theta,
            cfg_scale,
            attention_dropout,
            **kwargs,
        )

    @classmethod
    def from_original(cls, block: dict[str, Any]) -> MaskGctS2AConfig:
        keys = (
            "hidden_size",
            "num_layers",
            "num_heads",
            "num_quantizer",
            "codebook_size",
            "cond_codebook_size",
            "cond_dim",
            "mask_layer_schedule",
            "predict_layer_1",
            "cfg_scale",
        )
        return cls(**{k: block[k] for k in keys if k in block})


# The official `model` block of maskgct.json (used when the converter gets no --config)
OFFICIAL_MASKGCT_CONFIG: dict[str, Any] = {
    "t2s_model": {
        "hidden_size": 1536,
        "num_layers": 16,
        "num_heads": 16,
        "cfg_scale": 0.15,
        "cond_codebook_size": 8192,
        "cond_dim": 1024,
    },
    "s2a_model": {
        "s2a_1layer": {
            "num_quantizer": 1,
            "hidden_size": 1024,
            "num_layers": 16,
            "num_heads": 16,
            "codebook_size": 1024,
            "cfg_scale": 0.15,
            "mask_layer_schedule": "linear",
            "cond_codebook_size": 8192,
            "cond_dim": 1024,
            "predict_layer_1": True,
        },
        "s2a_full": {
            "num_quantizer": 12,
            "hidden_size": 1024,
            "num_layers": 16,
            "num_heads": 16,
            "codebook_size": 1024,
            "cfg_scale": 0.15,
            "mask_layer_schedule": "linear",
            "cond_codebook_size": 8192,
            "cond_dim": 1024,
            "predict_layer_1": False,
        },
    },
    "semantic_codec": {
        "codebook_size": 8192,
        "hidden_size": 1024,
        "codebook_dim": 8,
        "vocos_dim": 384,
        "vocos_intermediate_dim": 2048,
        "vocos_num_layers": 12,
    },
    "acoustic_codec": {
        "encoder": {"d_model": 96, "up_ratios": [3, 4, 5, 8], "out_channels": 256, "use_tanh": False},
        "decoder": {
            "in_channel": 256,
            "upsample_initial_channel": 1536,
            "up_ratios": [8, 5, 4, 3],
            "num_quantizers": 12,
            "codebook_size": 1024,
            "codebook_dim": 8,
            "quantizer_type": "fvq",
            "quantizer_dropout": 0.5,
            "commitment": 0.25,
            "codebook_loss_weight": 1.0,
            "use_l2_normlize": True,
            "codebook_type": "euclidean",
            "kmeans_init": False,
            "kmeans_iters": 10,
            "decay": 0.8,
            "eps": 0.5,
            "threshold_ema_dead_code": 2,
            "weight_init": False,
            "use_vocos": True,
            "vocos_dim": 512,
            "vocos_intermediate_dim": 4096,
            "vocos_num_layers": 30,
            "n_fft": 1920,
            "hop_size": 480,
            "padding": "same",
        },
    },
}


class MaskGctConfig(PretrainedConfig):
    """The whole MaskGCT system: w2v-bert-2.0 features -> semantic codec; T2S; S2A 1-layer + full; acoustic codec.

    Args:
        semantic_model_config: `Wav2Vec2BertConfig` (dict or config) of the feature model, truncated to
            ``semantic_layer`` layers (only the output of that layer is used).
        semantic_layer: index into w2v-bert's hidden states (17: the output of the 17th conformer layer).
        semantic_codec_config / acoustic_codec_config / t2s_config / s2a_1layer_config / s2a_full_config: the
            component configs (dicts or config objects; defaults: the official sizes).
        semantic_sampling_rate: rate of the semantic path's audio (16000); ``sampling_rate`` that of the output.
        frame_rate: token frames per second shared by both token streams (50).
        semantic_rng_draws: random numbers the original's feature model draws before T2S (one per w2v-bert layer
            of the source checkpoint); replayed by ``generate(do_sample=True)`` for bit-exact seeded runs.
    """

    model_type = "maskgct"
    sub_configs = {
        "semantic_model_config": Wav2Vec2BertConfig,
        "semantic_codec_config": MaskGctSemanticCodecConfig,
        "acoustic_codec_config": MaskGctAcousticCodecConfig,
        "t2s_config": MaskGctT2SConfig,
        "s2a_1layer_config": MaskGctS2AConfig,
        "s2a_full_config": MaskGctS2AConfig,
    }

    def __init__(
        self,
        semantic_model_config: dict | PretrainedConfig | None = None,
        semantic_codec_config: dict | PretrainedConfig | None = None,
        acoustic_codec_config: dict | PretrainedConfig | None = None,
        t2s_config: dict | PretrainedConfig | None = None,
        s2a_1layer_config: dict | PretrainedConfig | None = None,
        s2a_full_config: dict | PretrainedConfig | None = None,
        semantic_layer: int = 17,
        semantic_sampling_rate: int = 16000,
        frame_rate: int = 50,
        semantic_rng_draws: int | None = None,
        **kwargs,
    ):
        def build(value, cls, defaults=None):
            if isinstance(value, PretrainedConfig):
                return value
            return cls(**{**(defaults or {}), **(value or {})})

        self.semantic_model_config = build(
            semantic_model_config, Wav2Vec2BertConfig, {"num_hidden_layers": semantic_layer, "add_adapter": False}
        )
        self.semantic_codec_config = build(semantic_codec_config, MaskGctSemanticCodecConfig)
        self.acoustic_codec_config = build(acoustic_codec_config, MaskGctAcousticCodecConfig)
        self.t2s_config = build(t2s_config, MaskGctT2SConfig)
        self.s2a_1layer_config = build(
            s2a_1layer_config, MaskGctS2AConfig, {"num_quantizer": 1, "predict_layer_1": True}
        )
        self.s2a_full_config = build(s2a_full_config, MaskGctS2AConfig, {"predict_layer_1": False})
        if semantic_layer < 1 or semantic_layer > self.semantic_model_config.num_hidden_layers:
            raise ValueError(
                f"semantic_layer ({semantic_layer}) must be in 1..{self.semantic_model_config.num_hidden_layers} "
                "(the semantic model's number of layers)"
            )
        self.semantic_layer = semantic_layer
        self.semantic_sampling_rate = semantic_sampling_rate
        self.frame_rate = frame_rate
        # The original runs w2v-bert under transformers 4.41, whose encoder draws one random number per layer even in
        # eval (its LayerDrop check); generate() replays these draws so that seeded runs reproduce the original.
        # Default: the truncated model's layer count; the converter stores the source checkpoint's (24 for
        # w2v-bert-2.0).
        self.semantic_rng_draws = (
            self.semantic_model_config.num_hidden_layers if semantic_rng_draws is None else int(semantic_rng_draws)
        )
        super().__init__(**kwargs)

    @property
    def sampling_rate(self) -> int:
        return self.acoustic_codec_config.sampling_rate

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        for key in self.sub_configs:
            value = getattr(self, key)
            out[key] = value.to_dict() if isinstance(value, PretrainedConfig) else value
        return out
