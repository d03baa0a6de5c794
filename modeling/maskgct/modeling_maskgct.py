"""The whole MaskGCT text-to-speech system as one transformers model.

``MaskGctForTextToSpeech`` holds the six networks of the official release plus the feature model:

* ``semantic_model``: transformers' `Wav2Vec2BertModel` (w2v-bert-2.0) truncated to ``config.semantic_layer``
  layers (only that layer's output is used);
* ``semantic_codec``: RepCodec (+ the feature normalisation statistics);
* ``t2s``: text -> semantic tokens; ``s2a_1layer`` / ``s2a_full``: semantic -> acoustic layer 0 / layers 1..Q-1;
* ``acoustic_codec``: waveform <-> acoustic RVQ codes.

On disk every component is a sub-folder that loads alone (``t2s/``, ``s2a_1layer/``, ``s2a_full/``,
``semantic_codec/``, ``acoustic_codec/``, ``semantic_model/``); the root holds the composite ``config.json`` and the
processor files. `from_pretrained` also accepts a single-file checkpoint written by the default transformers layout.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import PreTrainedModel, Wav2Vec2BertModel
from transformers.utils import ModelOutput

from ...configuration.maskgct import MaskGctConfig
from ..compat import cpu_rng_untouched
from .codecs import MaskGctAcousticCodecModel, MaskGctSemanticCodecModel
from .generators import MaskGctS2AModel, MaskGctT2SModel

COMPONENTS = {
    # attribute / sub-folder: (config attribute, model class)
    "semantic_model": ("semantic_model_config", Wav2Vec2BertModel),
    "semantic_codec": ("semantic_codec_config", MaskGctSemanticCodecModel),
    "acoustic_codec": ("acoustic_codec_config", MaskGctAcousticCodecModel),
    "t2s": ("t2s_config", MaskGctT2SModel),
    "s2a_1layer": ("s2a_1layer_config", MaskGctS2AModel),
    "s2a_full": ("s2a_full_config", MaskGctS2AModel),
}

DEFAULT_S2A_STEPS = (25, 10, 1)  # then 1 for every further layer


@dataclass
class MaskGctGenerationOutput(ModelOutput):
    """Output of `MaskGctForTextToSpeech.generate`.

    Args:
        audio: generated waveform [B, L] at ``config.sampling_rate`` (24 kHz), the target part only.
        semantic_ids: prompt semantic codes followed by the generated ones [B, P + N].
        acoustic_codes: generated acoustic codes [B, N', Q] (target frames only; N' = P + N - P_acoustic).
        prompt_semantic_ids: [B, P]; prompt_acoustic_codes: [B, P_acoustic, Q].
    """

    audio: torch.FloatTensor | None = None
    semantic_ids: torch.LongTensor | None = None
    acoustic_codes: torch.LongTensor | None = None
    prompt_semantic_ids: torch.LongTensor | None = None
    prompt_acoustic_codes: torch.LongTensor | None = None


def target_length_frames(
    target_len,
    prompt_num_samples: int,
    num_prompt_phones: int,
    num_target_phones: int,
    semantic_sampling_rate: int,
    frame_rate: int,
) -> int:
    """Number of semantic frames to generate: ``target_len`` seconds, or (None) the prompt's speaking rate
    transferred to the target phones (spec 8.2; truncation toward 0 as the original)."""
    if target_len is None:
        if num_prompt_phones < 1:
            raise ValueError("the prompt text has no phones: pass target_len (seconds) explicitly")
        n = int((prompt_num_samples * num_target_phones / num_prompt_phones) / semantic_sampling_rate * frame_rate)
    else:
        if isinstance(target_len, bool) or not isinstance(target_len, numbers.Real) or not target_len > 0:
            raise ValueError(f"target_len must be a positive duration in seconds (or None), got {target_len!r}")
        n = int(target_len * frame_rate)
    if n < 1:
        raise ValueError(f"the target is shorter than one frame (target_len={target_len!r}); use a longer target_len")
    return n


class MaskGctPreTrainedModelBase(PreTrainedModel):
    config_class = MaskGctConfig
    config: MaskGctConfig
    base_model_prefix = "maskgct"
    main_input_name = "phone_ids"
    _supports_sdpa = True
    _no_split_modules = ["MaskGctDecoderLayer", "Wav2Vec2BertEncoderLayer"]

    @torch.no_grad()
    def _init_weights(self, module):
        pass  # every component initialises itself


class MaskGctForTextToSpeech(MaskGctPreTrainedModelBase):
    """MaskGCT zero-shot TTS: prompt speech + prompt text + target text -> target speech (24 kHz)."""

    def __init__(self, config: MaskGctConfig, **components):
        super().__init__(config)
        for name, (config_attr, cls) in COMPONENTS.items():
            module = components.pop(name, None)
            if module is None:
                sub_config = getattr(config, config_attr)
                module = cls(sub_config) if name != "semantic_model" else Wav2Vec2BertModel(sub_config)
            setattr(self, name, module)
        if components:
            raise TypeError(f"unknown components {sorted(components)}; expected {sorted(COMPONENTS)}")
        self._processor = None
        self.post_init()

    @classmethod
    def can_generate(cls) -> bool:  # generate() is our own (non-autoregressive), not GenerationMixin's
        return True

    # ------------------------------------------------------------------------------------------------ loading

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """Load from a folder (or Hub repo) with one sub-folder per component (as written by `save_pretrained`
        and the converter); other layouts go through the standard transformers loader.

        ``dtype`` applies to the generators (T2S, S2A); the prompt-encoding and decoding components (w2v-bert,
        both codecs; ~13% of the parameters) load in ``codec_dtype`` (default float32: in bf16 their codes drift
        from the original's). Pass ``codec_dtype=None`` to give them ``dtype`` too."""
        codec_dtype = kwargs.pop("codec_dtype", torch.float32)
        path = str(pretrained_model_name_or_path)
        folder = Path(path)
        if not folder.is_dir():
            from huggingface_hub import snapshot_download

            hub = {k: kwargs[k] for k in ("cache_dir", "revision", "token", "local_files_only") if k in kwargs}
            try:
                folder = Path(snapshot_download(path, **hub))
            except Exception:  # not a Hub repo we can fetch: let transformers report it
                return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        if not (folder / "t2s" / "config.json").is_file():
            return super().from_pretrained(str(folder), *args, **kwargs)
        config = kwargs.pop("config", None)
        if not isinstance(config, MaskGctConfig):
            config = MaskGctConfig.from_pretrained(str(folder))
        load_kwargs = {
            k: kwargs[k]
            for k in ("dtype", "torch_dtype", "attn_implementation", "device_map", "low_cpu_mem_usage")
            if k in kwargs
        }
        components = {}
        for name, (config_attr, component_cls) in COMPONENTS.items():
            sub_kwargs = dict(load_kwargs)
            if name == "semantic_model" or name.endswith("codec"):
                sub_kwargs.pop("attn_implementation", None)
                if codec_dtype is not None:
                    sub_kwargs.pop("torch_dtype", None)
                    sub_kwargs["dtype"] = codec_dtype
            components[name] = component_cls.from_pretrained(str(folder / name), **sub_kwargs)
            setattr(config, config_attr, components[name].config)
        model = cls(config, **components)
        model._processor = None
        model.config._name_or_path = str(folder)
        model.name_or_path = str(folder)
        return model.eval()

    def save_pretrained(self, save_directory, *args, **kwargs):
        """Root ``config.json`` + one sub-folder per component (each loadable on its own)."""
        kwargs.pop("state_dict", None)
        save_directory = Path(save_directory)
        save_directory.mkdir(parents=True, exist_ok=True)
        self.config.architectures = [type(self).__name__]
        self.config.save_pretrained(save_directory)
        for name in COMPONENTS:
            getattr(self, name).save_pretrained(save_directory / name, *args, **kwargs)

    # ------------------------------------------------------------------------------------------------ semantic

    @torch.no_grad()
    def extract_semantic_codes(
        self, input_features: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.LongTensor:
        """w2v-bert features ([B, T, 160] from the processor's feature extractor) -> semantic codes [B, T].

        Layer ``config.semantic_layer`` of w2v-bert-2.0, normalised with the stored statistics, quantized by the
        semantic codec. Frames whose mask is 0 are encoded too (the original keeps them; quirk Q-F1).
        """
        if input_features.dim() != 3:
            raise ValueError(f"input_features must be [batch, frames, features], got {tuple(input_features.shape)}")
        expected = self.semantic_model.config.feature_projection_input_dim
        if input_features.shape[-1] != expected:
            raise ValueError(
                f"input_features must have {expected} features per frame (w2v-bert's stacked "
                f"fbank), got {input_features.shape[-1]}"
            )
        device = self.semantic_codec.device
        input_features = input_features.to(device=device, dtype=self.semantic_model.dtype)
        if attention_mask is not None:
            attention_mask = attention_mask.to(device)
        # the random stream stays untouched whatever the transformers release (generate() replays the original's
        # draws itself)
        with cpu_rng_untouched():
            out = self.semantic_model(
                input_features=input_features, attention_mask=attention_mask, output_hidden_states=True
            )
        hidden = out.hidden_states[self.config.semantic_layer]
        codes, _ = self.semantic_codec.quantize(
            self.semantic_codec.normalize_features(hidden.to(self.semantic_codec.dtype))
        )
        return codes

    # ------------------------------------------------------------------------------------------------ generation

    def _text_processor(self):
        if self._processor is None:
            from ...processing.maskgct import MaskGctProcessor

            source = self.config._name_or_path or getattr(self, "name_or_path", "")
            try:
                self._processor = MaskGctProcessor.from_pretrained(source)
            except Exception as err:
                raise ValueError(
                    "generate() got raw text: it needs the MaskGCT processor of this model (saved next to it); "
                    "call `processor(text=..., prompt_text=..., prompt_audio=...)` and pass its outputs instead"
                ) from err
        return self._processor

    @torch.no_grad()
    def generate(
        self,
        phone_ids: torch.LongTensor | None = None,
        input_features: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        prompt_audio_values: torch.Tensor | None = None,
        num_prompt_phones: torch.Tensor | None = None,
        prompt_num_samples: torch.Tensor | None = None,
        target_len: float | None = None,
        n_timesteps: int = 25,
        cfg: float = 2.5,
        rescale_cfg: float = 0.75,
        n_timesteps_s2a: list[int] | None = None,
        cfg_s2a: float = 2.5,
        rescale_cfg_s2a: float = 0.75,
        do_sample: bool = True,
        temperature: float = 0.9,
        temperature_s2a: float = 1.5,
        filter_thres: float = 0.98,
        generator: torch.Generator | None = None,
        cfg_batching: bool | None = None,
        text=None,
        prompt_text: str | None = None,
        prompt_audio=None,
        language: str = "en",
        **kwargs,
    ) -> MaskGctGenerationOutput:
        """Zero-shot TTS (the original ``maskgct_inference``): T2S -> S2A 1-layer -> S2A full -> codec decoder.

        Args:
            phone_ids: [1, Ph] prompt-text phones then target-text phones (processor).
            input_features / attention_mask: w2v-bert features of the 16 kHz prompt (processor).
            prompt_audio_values: the 24 kHz prompt waveform [1, L] (processor).
            num_prompt_phones: [1] number of prompt-text phones; prompt_num_samples: [1] 16 kHz prompt length
                (duration rule of ``target_len=None``).
            target_len: seconds of speech to generate; None = the prompt's speaking rate.
            n_timesteps / cfg / rescale_cfg / temperature / filter_thres: T2S decoding.
            n_timesteps_s2a: steps per acoustic layer (entry 0 drives the 1-layer model; default [25, 10, 1, ...]);
                cfg_s2a / rescale_cfg_s2a / temperature_s2a: S2A decoding.
            do_sample: False = noise-free decoding; with True the random numbers come from ``generator`` (default:
                the global generator) in the original's order: ``config.semantic_rng_draws`` scalars (what the
                original's w2v-bert forward consumed), then T2S, then S2A.
            text / prompt_text / prompt_audio / language: raw inputs instead of processor outputs (what
                ``pipeline("text-to-speech")`` passes); processed with this model's saved processor.

        Returns:
            `MaskGctGenerationOutput` (``audio``, ``semantic_ids``, ``acoustic_codes``, ...).
        """
        for key in ("max_new_tokens", "max_length", "return_dict_in_generate", "generation_config"):
            kwargs.pop(key, None)
        if kwargs:
            raise TypeError(f"generate() got unexpected arguments {sorted(kwargs)}")
        if phone_ids is None:
            if text is None:
                raise ValueError("generate() needs the processor's outputs (phone_ids, input_features, ...) or text")
            if isinstance(text, (list, tuple)):
                if len(text) != 1:
                    raise ValueError("MaskGCT generates one utterance per call: pass a single text")
                text = text[0]
            inputs = self._text_processor()(
                text=text, prompt_text=prompt_text, prompt_audio=prompt_audio, language=language
            )
            phone_ids, input_features = inputs["phone_ids"], inputs["input_features"]
            attention_mask, prompt_audio_values = inputs["attention_mask"], inputs["prompt_audio_values"]
            num_prompt_phones, prompt_num_samples = inputs["num_prompt_phones"], inputs["prompt_num_samples"]
        missing = [
            name
            for name, value in (("input_features", input_features), ("prompt_audio_values", prompt_audio_values))
            if value is None
        ]
        if missing:
            raise ValueError(f"generate() needs {missing}: pass the processor outputs of a prompt (prompt_audio)")
        if phone_ids.dim() != 2 or phone_ids.shape[0] != 1:
            raise ValueError(
                f"MaskGCT generates one utterance per call: phone_ids must be [1, phones], got {tuple(phone_ids.shape)}"
            )
        q = self.s2a_full.config.num_quantizer
        if n_timesteps_s2a is None:
            n_timesteps_s2a = (list(DEFAULT_S2A_STEPS) + [1] * q)[:q]
        n_timesteps_s2a = list(n_timesteps_s2a)
        if len(n_timesteps_s2a) != q:
            raise ValueError(
                f"n_timesteps_s2a must list one step count per acoustic layer ({q}), got {len(n_timesteps_s2a)}"
            )
        total_phones = phone_ids.shape[1]
        n_prompt = int(num_prompt_phones.reshape(-1)[0]) if num_prompt_phones is not None else None
        if target_len is None and (n_prompt is None or prompt_num_samples is None):
            raise ValueError("target_len=None needs num_prompt_phones and prompt_num_samples (processor outputs)")
        n_frames = target_length_frames(
            target_len,
            int(prompt_num_samples.reshape(-1)[0]) if prompt_num_samples is not None else 0,
            n_prompt or 0,
            total_phones - (n_prompt or 0),
            self.config.semantic_sampling_rate,
            self.config.frame_rate,
        )
        device = self.t2s.device
        prompt_semantic = self.extract_semantic_codes(input_features, attention_mask).to(device)
        if do_sample:
            # the original's w2v-bert (transformers 4.41) draws one CPU random number per layer even in eval; replay
            # them so that T2S sees the same random stream (seeded runs reproduce the original bit for bit)
            cpu_generator = generator if generator is not None and generator.device.type == "cpu" else None
            for _ in range(self.config.semantic_rng_draws):
                torch.rand([], generator=cpu_generator)
        generated = self.t2s.generate(
            prompt_ids=prompt_semantic,
            phone_ids=phone_ids.to(device),
            target_len=n_frames,
            n_timesteps=n_timesteps,
            cfg=cfg,
            rescale_cfg=rescale_cfg,
            temperature=temperature,
            filter_thres=filter_thres,
            do_sample=do_sample,
            generator=generator,
            cfg_batching=cfg_batching,
        )
        semantic_ids = torch.cat([prompt_semantic, generated], dim=1)
        prompt_audio_values = prompt_audio_values.to(device=self.acoustic_codec.device, dtype=self.acoustic_codec.dtype)
        prompt_acoustic = self.acoustic_codec.encode(prompt_audio_values).audio_codes
        if prompt_acoustic.shape[1] >= semantic_ids.shape[1]:
            raise ValueError("the acoustic prompt is as long as prompt + target: use a longer target_len")
        s2a = {
            "cfg": cfg_s2a,
            "rescale_cfg": rescale_cfg_s2a,
            "temperature": temperature_s2a,
            "filter_thres": filter_thres,
            "do_sample": do_sample,
            "generator": generator,
            "cfg_batching": cfg_batching,
        }
        layer0 = self.s2a_1layer.generate(
            semantic_ids=semantic_ids,
            prompt_codes=prompt_acoustic.to(device),
            n_timesteps=n_timesteps_s2a[: self.s2a_1layer.config.num_quantizer],
            **s2a,
        )
        codes = self.s2a_full.generate(
            semantic_ids=semantic_ids,
            prompt_codes=prompt_acoustic.to(device),
            n_timesteps=n_timesteps_s2a,
            gt_codes=layer0,
            **s2a,
        )
        audio = self.acoustic_codec.decode(codes.to(self.acoustic_codec.device)).audio_values
        return MaskGctGenerationOutput(
            audio=audio,
            semantic_ids=semantic_ids,
            acoustic_codes=codes,
            prompt_semantic_ids=prompt_semantic,
            prompt_acoustic_codes=prompt_acoustic,
        )

    def forward(self, *args, **kwargs):
        raise NotImplementedError(
            "MaskGctForTextToSpeech has no single forward: train `model.t2s` / `model.s2a_1layer` / `model.s2a_full` "
            "(their forward computes the masked-token loss) and synthesise with `generate`"
        )
