"""The sampling settings of both generators: one set of names, the original MOSS-TTS aliases, one validation.

`CodecTTSDelayForConditionalGeneration.generate` and `CodecTTSLocalForConditionalGeneration.generate` take the same
settings (as keyword arguments or on a `GenerationConfig`; saved `generation_config.json` files use the same keys):

======================================  ========================================================================
text channel (column 0)                 `do_sample`, `temperature`, `top_k`, `top_p` (transformers' names and
                                        semantics; `temperature` must be > 0 when sampling)
original names of the text settings     `text_temperature`, `text_top_k`, `text_top_p` (aliases; never stored)
audio channels (every codebook)         `audio_do_sample` (None: follows `do_sample`), `audio_temperature`,
                                        `audio_top_k`, `audio_top_p`, `audio_repetition_penalty`,
                                        `audio_repetition_penalty_scope`
======================================  ========================================================================

* `do_sample=False` is greedy for text and audio (audio follows `do_sample` unless `audio_do_sample` is set).
* Original semantics, kept for the original names: `text_temperature <= 0` makes the text channel greedy (the audio
  channels keep sampling unless told otherwise) and `audio_temperature <= 0` makes the audio channels greedy
  (whatever `audio_do_sample` says). The standard `temperature` keeps transformers' rule instead (> 0 when sampling).
* An alias and its standard name given together with different values raise `ValueError`; so do decoding modes
  other than greedy/sampling (beams, assisted, contrastive, DoLa) and `num_return_sequences > 1`.

What differs between the families (each follows its reference) is documented in their `generate` docstrings:
the audio top-k/top-p variants, when the audio repetition penalty applies, which extra text logits processors work.
"""

from __future__ import annotations

import copy
from typing import Any

from transformers import GenerationConfig
from transformers.generation.configuration_utils import GenerationMode

__all__ = [
    "AUDIO_SAMPLING_KEYS",
    "DEFAULT_MAX_NEW_TOKENS",
    "TEXT_SAMPLING_ALIASES",
    "audio_do_sample",
    "prepare_sampling_config",
]

# default generation budget of both generators, in rows/frames (≈ 5.5 min of audio at 12.5 frames/s)
DEFAULT_MAX_NEW_TOKENS = 4096

# original MOSS-TTS name -> transformers name of the same text-channel setting
TEXT_SAMPLING_ALIASES = {"text_temperature": "temperature", "text_top_k": "top_k", "text_top_p": "top_p"}
# generation-config attributes of the audio channels (custom attributes: they round-trip through the json file)
AUDIO_SAMPLING_KEYS = (
    "audio_do_sample",
    "audio_temperature",
    "audio_top_k",
    "audio_top_p",
    "audio_repetition_penalty",
    "audio_repetition_penalty_scope",
)
_SUPPORTED_MODES = (GenerationMode.GREEDY_SEARCH, GenerationMode.SAMPLE)


def prepare_sampling_config(
    model, generation_config: GenerationConfig | None, kwargs: dict[str, Any], defaults: dict[str, Any], family: str
) -> tuple[GenerationConfig, dict[str, Any]]:
    """Merge ``generation_config`` (default: ``model.generation_config``) and ``kwargs`` into a private copy.

    Resolves the aliases and the "temperature <= 0 means greedy" rule, fills missing audio settings (from the
    model's generation config, then ``defaults``), validates every sampling setting and the decoding mode.

    Returns:
        ``(generation_config, model_kwargs)``: the resolved copy (``audio_do_sample`` is a bool, no alias attribute
        is left) and the kwargs that are not generation settings (``attention_mask``, ``streamer``, ...).
    """
    config = copy.deepcopy(generation_config if generation_config is not None else model.generation_config)
    # aliases stored on a config (hand-written or older generation_config.json files), then aliases in kwargs
    stored = {key: getattr(config, key) for key in TEXT_SAMPLING_ALIASES if hasattr(config, key)}
    for key in stored:
        delattr(config, key)
    stored |= {standard: getattr(config, standard) for standard in TEXT_SAMPLING_ALIASES.values()}
    stored = _fold_aliases(stored, config)
    for key, value in stored.items():
        setattr(config, key, value)
    if generation_config is not None:
        # None fields and missing custom entries come from the model's own config, as transformers resolves them
        own = {k: v for k, v in model.generation_config.to_dict().items() if k not in TEXT_SAMPLING_ALIASES}
        config.update(**own, defaults_only=True, allow_custom_entries=True)
    for key in AUDIO_SAMPLING_KEYS:
        if getattr(config, key, None) is None:
            setattr(config, key, defaults.get(key))
    kwargs = _fold_aliases(dict(kwargs), config)
    model_kwargs = config.update(**kwargs)

    if config.audio_temperature is not None and config.audio_temperature <= 0:
        config.audio_do_sample = False  # original semantics: greedy audio
    config.do_sample = bool(config.do_sample)
    config.audio_do_sample = config.do_sample if config.audio_do_sample is None else bool(config.audio_do_sample)
    _validate(config, model_kwargs.get("assistant_model"), family)
    return config, model_kwargs


def audio_do_sample(generation_config: GenerationConfig) -> bool:
    """Whether the audio channels sample (a config resolved by :func:`prepare_sampling_config`)."""
    value = getattr(generation_config, "audio_do_sample", None)
    return bool(generation_config.do_sample) if value is None else bool(value)


def _fold_aliases(settings: dict[str, Any], config: GenerationConfig) -> dict[str, Any]:
    """Rename the original names in ``settings`` to transformers' names (``config``: the values they override)."""
    for alias, standard in TEXT_SAMPLING_ALIASES.items():
        value = settings.pop(alias, None)
        if value is None:
            continue
        other = settings.get(standard)
        if other is not None and other != value:
            raise ValueError(
                f"{alias}={value!r} and {standard}={other!r} disagree: {alias} is the original MOSS-TTS name of "
                f"{standard}, pass only one of them"
            )
        if alias == "text_temperature" and value <= 0:
            # original semantics: greedy text; the audio channels keep the sampling decision they had
            if settings.get("audio_do_sample") is None and getattr(config, "audio_do_sample", None) is None:
                settings["audio_do_sample"] = bool(settings.get("do_sample", config.do_sample))
            settings["do_sample"] = False
            settings.pop(standard, None)
        else:
            settings[standard] = value
    return settings


def _validate(config: GenerationConfig, assistant_model, family: str) -> None:
    mode = config.get_generation_mode(assistant_model)
    if mode not in _SUPPORTED_MODES:
        if mode in (GenerationMode.CONSTRAINED_BEAM_SEARCH,):
            what = "constrained beam search (constraints / force_words_ids)"
        elif "beam" in mode.value:
            what = f"beam search (num_beams={config.num_beams})"
        elif mode == GenerationMode.ASSISTED_GENERATION:
            what = "assisted generation (assistant_model / prompt_lookup_num_tokens)"
        else:
            what = f"{mode.value.replace('_', ' ')} (penalty_alpha / dola_layers)"
        raise ValueError(
            f"{what} is not supported by the {family} generator: use greedy decoding (do_sample=False) or "
            "sampling (do_sample=True)"
        )
    if (config.num_return_sequences or 1) != 1:
        raise ValueError(
            f"num_return_sequences > 1 is not supported by the {family} generator: repeat the prompt in the batch"
        )
    if config.do_sample:
        _check_group(config.temperature, config.top_k, config.top_p, "")
    if config.audio_do_sample:
        _check_group(config.audio_temperature, config.audio_top_k, config.audio_top_p, "audio_")
    penalty = config.audio_repetition_penalty
    if penalty is not None and not penalty > 0:
        raise ValueError(f"audio_repetition_penalty must be > 0 (1.0 disables it), got {penalty!r}")
    if config.audio_repetition_penalty_scope not in (None, "sequence", "reference"):
        raise ValueError(
            "audio_repetition_penalty_scope must be 'sequence' or 'reference', "
            f"got {config.audio_repetition_penalty_scope!r}"
        )


def _check_group(temperature, top_k, top_p, prefix: str) -> None:
    if temperature is not None and not temperature > 0:
        greedy = "do_sample=False or text_temperature=0" if not prefix else "audio_do_sample=False"
        raise ValueError(f"{prefix}temperature must be > 0 when sampling ({greedy} for greedy), got {temperature!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0):
        raise ValueError(f"{prefix}top_k must be a non-negative int (0 or None disables it), got {top_k!r}")
    if top_p is not None and not 0.0 < float(top_p) <= 1.0:
        raise ValueError(f"{prefix}top_p must be in (0, 1] (1.0 disables it), got {top_p!r}")
