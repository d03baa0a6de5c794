"""Configuration of the causal-transformer audio tokenizer (codec), MOSS-Audio-Tokenizer compatible.

The codec is a stack of *stages* executed in order. A stage is either

* ``{"type": "patchify", "patch_size": h}``: a pure reshape folding ``h`` consecutive time steps into channels
  (encoder) or unfolding them back (decoder); no parameters; or
* ``{"type": "transformer", "input_size", "hidden_size", "output_size", "num_layers", "num_attention_heads",
  "intermediate_size", "layer_scale", "rope_theta"}``: a causal pre-LayerNorm transformer (interleaved RoPE, LayerScale,
  exact GELU, no linear biases) between two optional bias-free projections (absent when the size already matches).

Between encoder and decoder sits a residual quantizer with cosine-similarity code search.
"""

from __future__ import annotations

from typing import Any

from transformers import PreTrainedConfig

_TRANSFORMER_DEFAULTS = {"layer_scale": True, "rope_theta": 10000.0}


def _transformer(input_size, hidden_size, output_size, num_layers, num_heads, intermediate_size=None) -> dict:
    return {
        "type": "transformer",
        "input_size": input_size,
        "hidden_size": hidden_size,
        "output_size": output_size,
        "num_layers": num_layers,
        "num_attention_heads": num_heads,
        "intermediate_size": intermediate_size or 4 * hidden_size,
        **_TRANSFORMER_DEFAULTS,
    }


def _patch(size: int) -> dict:
    return {"type": "patchify", "patch_size": size}


# The released MOSS-Audio-Tokenizer layout (24 kHz -> 12.5 Hz, ~1.77 B parameters).
RELEASED_ENCODER_STAGES = [
    _patch(240),
    _transformer(240, 768, 384, 12, 12),
    _patch(2),
    _transformer(768, 768, 384, 12, 12),
    _patch(2),
    _transformer(768, 768, 640, 12, 12),
    _patch(2),
    _transformer(1280, 1280, 768, 32, 20),
]
RELEASED_DECODER_STAGES = [
    _transformer(768, 1280, 1280, 32, 20),
    _patch(2),
    _transformer(640, 768, 768, 12, 12),
    _patch(2),
    _transformer(384, 768, 768, 12, 12),
    _patch(2),
    _transformer(384, 768, 240, 12, 12),
    _patch(240),
]

# Quantizer types of the original whose code search is the cosine ("LFQ") one we implement.
_COSINE_QUANTIZER_TYPES = ("rlfq", "random_prefix_rlfq")


class CodecTTSAudioTokenizerConfig(PreTrainedConfig):
    r"""Configuration of [`CodecTTSAudioTokenizerModel`]. Defaults build the released 24 kHz MOSS-Audio-Tokenizer.

    Args:
        sampling_rate (`int`, defaults to 24000): waveform sample rate in Hz (mono).
        downsample_rate (`int`, defaults to 1920): samples per code frame; must equal the product of the encoder
            (and decoder) patch sizes.
        context_duration (`float`, defaults to 10.0): attention window of every transformer stage, in seconds. A
            stage running at ``r`` Hz attends to the last ``int(r * context_duration)`` steps, the current one
            included, offline and in streaming alike.
        encoder_stages / decoder_stages (`list[dict]`): stages in execution order (see the module docstring).
        num_quantizers (`int`, defaults to 32): residual quantizer stages (a code stream each).
        codebook_size (`int`, defaults to 1024): entries per codebook.
        codebook_dim (`int`, defaults to 8): dimension of the cosine code search.
        quantizer_hidden_size (`int`, defaults to 512): dimension of the residual space.
        layer_norm_eps (`float`, defaults to 1e-5): LayerNorm epsilon.
        layer_scale_initial_scale (`float`, defaults to 0.01): LayerScale value of freshly initialised models.
        initializer_range (`float`, defaults to 0.02): std of the normal init of linear weights.

    The quantizer's input size is the last encoder stage's output size and its output size the first decoder
    stage's input size.
    """

    model_type = "codectts_audio_tokenizer"

    def __init__(
        self,
        sampling_rate: int = 24000,
        downsample_rate: int = 1920,
        context_duration: float = 10.0,
        encoder_stages: list[dict] | None = None,
        decoder_stages: list[dict] | None = None,
        num_quantizers: int = 32,
        codebook_size: int = 1024,
        codebook_dim: int = 8,
        quantizer_hidden_size: int = 512,
        layer_norm_eps: float = 1e-5,
        layer_scale_initial_scale: float = 0.01,
        initializer_range: float = 0.02,
        **kwargs,
    ):
        self.sampling_rate = int(sampling_rate)
        self.downsample_rate = int(downsample_rate)
        self.context_duration = float(context_duration)
        self.encoder_stages = [self._normalise_stage(s) for s in (encoder_stages or RELEASED_ENCODER_STAGES)]
        self.decoder_stages = [self._normalise_stage(s) for s in (decoder_stages or RELEASED_DECODER_STAGES)]
        self.num_quantizers = int(num_quantizers)
        self.codebook_size = int(codebook_size)
        self.codebook_dim = int(codebook_dim)
        self.quantizer_hidden_size = int(quantizer_hidden_size)
        self.layer_norm_eps = float(layer_norm_eps)
        self.layer_scale_initial_scale = float(layer_scale_initial_scale)
        self.initializer_range = float(initializer_range)
        super().__init__(**kwargs)
        self._validate()

    # ------------------------------------------------------------------ derived quantities
    @property
    def frame_rate(self) -> float:
        """Code frames per second (12.5 for the released model)."""
        return self.sampling_rate / self.downsample_rate

    @property
    def quantizer_input_size(self) -> int:
        return self.encoder_stages[-1]["output_size"]

    @property
    def quantizer_output_size(self) -> int:
        return self.decoder_stages[0]["input_size"]

    def stage_windows(self, part: str) -> list[int | None]:
        """Attention window (in steps, current step included) of every stage of ``part`` ("encoder"/"decoder").

        ``None`` for patchify stages. The stage rate is tracked the way the original does it (a running float
        divided by each encoder patch size, then multiplied by each decoder one), so windows match it exactly.
        """
        rate = float(self.sampling_rate)
        windows: dict[str, list[int | None]] = {"encoder": [], "decoder": []}
        for name, stages in (("encoder", self.encoder_stages), ("decoder", self.decoder_stages)):
            for stage in stages:
                if stage["type"] == "transformer":
                    windows[name].append(max(1, int(rate * self.context_duration)))
                else:
                    windows[name].append(None)
                    h = stage["patch_size"]
                    rate = rate / h if name == "encoder" else rate * h
        if part not in windows:
            raise ValueError(f"part must be 'encoder' or 'decoder', got {part!r}")
        return windows[part]

    # ------------------------------------------------------------------ validation
    @staticmethod
    def _normalise_stage(stage: dict) -> dict:
        stage = dict(stage)
        kind = stage.get("type")
        if kind == "patchify":
            if int(stage.get("patch_size", 0)) < 1:
                raise ValueError(f"patchify stage needs a positive 'patch_size': {stage}")
            stage["patch_size"] = int(stage["patch_size"])
            return stage
        if kind == "transformer":
            stage = {**_TRANSFORMER_DEFAULTS, **stage}
            required = ("input_size", "hidden_size", "output_size", "num_layers", "num_attention_heads")
            missing = [k for k in required if k not in stage]
            if missing:
                raise ValueError(f"transformer stage is missing {missing}: {stage}")
            stage.setdefault("intermediate_size", 4 * stage["hidden_size"])
            if stage["hidden_size"] % stage["num_attention_heads"]:
                raise ValueError(f"hidden_size must be divisible by num_attention_heads: {stage}")
            if (stage["hidden_size"] // stage["num_attention_heads"]) % 2:
                raise ValueError(f"head dimension must be even for rotary embeddings: {stage}")
            return stage
        raise ValueError(f"unknown stage type {kind!r} (expected 'patchify' or 'transformer'): {stage}")

    def _validate(self) -> None:
        for name, stages in (("encoder", self.encoder_stages), ("decoder", self.decoder_stages)):
            channels = 1 if name == "encoder" else self.quantizer_output_size
            hop = 1
            for i, stage in enumerate(stages):
                if stage["type"] == "patchify":
                    h = stage["patch_size"]
                    hop *= h
                    if name == "encoder":
                        channels *= h
                    else:
                        if channels % h:
                            raise ValueError(f"decoder stage {i}: {channels} channels cannot be unpatchified by {h}")
                        channels //= h
                else:
                    if stage["input_size"] != channels:
                        raise ValueError(
                            f"{name} stage {i} expects {stage['input_size']} input channels but receives {channels}"
                        )
                    channels = stage["output_size"]
            if hop != self.downsample_rate:
                raise ValueError(f"{name} patch sizes multiply to {hop}, but downsample_rate is {self.downsample_rate}")
            if name == "decoder" and channels != 1:
                raise ValueError(f"the decoder must end with 1 channel (mono audio), got {channels}")
        if self.encoder_stages[-1]["type"] != "transformer" or self.decoder_stages[0]["type"] != "transformer":
            raise ValueError("the encoder must end and the decoder must start with a transformer stage")
        if self.num_quantizers < 1 or self.codebook_size < 2 or self.codebook_dim < 1:
            raise ValueError("num_quantizers >= 1, codebook_size >= 2 and codebook_dim >= 1 are required")
        if self.context_duration <= 0:
            raise ValueError(f"context_duration must be positive, got {self.context_duration}")

    # ------------------------------------------------------------------ factories
    @classmethod
    def tiny(cls, **overrides) -> CodecTTSAudioTokenizerConfig:
        """A ~0.4 M parameter codec with the released stage layout (for tests, demos and benchmarks)."""
        kwargs: dict[str, Any] = dict(
            encoder_stages=[
                _patch(240),
                _transformer(240, 32, 24, 2, 2),
                _patch(2),
                _transformer(48, 32, 24, 2, 2),
                _patch(2),
                _transformer(48, 32, 40, 2, 2),
                _patch(2),
                _transformer(80, 64, 48, 2, 4),
            ],
            decoder_stages=[
                _transformer(48, 64, 80, 2, 4),
                _patch(2),
                _transformer(40, 32, 48, 2, 2),
                _patch(2),
                _transformer(24, 32, 48, 2, 2),
                _patch(2),
                _transformer(24, 32, 240, 2, 2),
                _patch(240),
            ],
            num_quantizers=32,
            codebook_size=64,
            codebook_dim=8,
            quantizer_hidden_size=32,
        )
        kwargs.update(overrides)
        return cls(**kwargs)

    @classmethod
    def from_original_config(cls, original: dict) -> CodecTTSAudioTokenizerConfig:
        """Build from an original MOSS-Audio-Tokenizer ``config.json`` dict (``encoder_kwargs``/``decoder_kwargs``).

        Raises ``ValueError`` naming any option this implementation does not support (other norms, positional
        embeddings, gated FFNs, non-causal stages, euclidean quantizers).
        """
        for key in ("encoder_kwargs", "decoder_kwargs"):
            if not isinstance(original.get(key), list) or not original[key]:
                raise ValueError(f"original config has no '{key}' list")
        quantizer = dict(original.get("quantizer_kwargs") or {})
        quantizer_type = quantizer.get("quantizer_type", original.get("quantizer_type", "rlfq"))
        if quantizer_type not in _COSINE_QUANTIZER_TYPES:
            raise ValueError(
                f"quantizer_type {quantizer_type!r} is not supported (only the cosine-search {_COSINE_QUANTIZER_TYPES})"
            )
        encoder = [
            cls._stage_from_original(s, f"encoder_kwargs[{i}]") for i, s in enumerate(original["encoder_kwargs"])
        ]
        decoder = [
            cls._stage_from_original(s, f"decoder_kwargs[{i}]") for i, s in enumerate(original["decoder_kwargs"])
        ]
        config = cls(
            sampling_rate=original.get("sampling_rate", original.get("sample_rate", 24000)),
            downsample_rate=original.get("downsample_rate", 1920),
            context_duration=original.get("causal_transformer_context_duration", 10.0),
            encoder_stages=encoder,
            decoder_stages=decoder,
            num_quantizers=quantizer.get("num_quantizers", 32),
            codebook_size=quantizer.get("codebook_size", 1024),
            codebook_dim=quantizer.get("codebook_dim", 8),
            quantizer_hidden_size=quantizer.get("rvq_dim", 512),
        )
        for key, expected in (("input_dim", config.quantizer_input_size), ("output_dim", config.quantizer_output_size)):
            if key in quantizer and quantizer[key] != expected:
                raise ValueError(f"quantizer_kwargs[{key!r}] = {quantizer[key]} does not match the stages ({expected})")
        return config

    @staticmethod
    def _stage_from_original(stage: dict, where: str) -> dict:
        kind = stage.get("module_type")
        if kind == "PatchedPretransform":
            return _patch(stage["patch_size"])
        if kind != "Transformer":
            raise ValueError(f"{where}: unsupported module_type {kind!r}")
        unsupported = {
            "causal": (stage.get("causal", False), True),
            "norm": (stage.get("norm", "layer_norm"), "layer_norm"),
            "positional_embedding": (stage.get("positional_embedding", "sin"), "rope"),
            "gating": (stage.get("gating", "none"), "none"),
        }
        for key, (value, wanted) in unsupported.items():
            if value != wanted:
                raise ValueError(f"{where}: {key}={value!r} is not supported (only {wanted!r})")
        out = _transformer(
            stage["input_dimension"],
            stage["d_model"],
            stage["output_dimension"],
            stage["num_layers"],
            stage["num_heads"],
            stage.get("dim_feedforward", 2048),
        )
        out["layer_scale"] = stage.get("layer_scale") is not None
        out["rope_theta"] = float(stage.get("max_period", 10000))
        return out


__all__ = ["CodecTTSAudioTokenizerConfig"]
