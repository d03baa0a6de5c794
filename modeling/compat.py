"""Every difference between the transformers releases we support (``>= 5.0.0, < 6``), in one place.

Model code never checks versions or signatures itself; it asks this module. Each entry says what differs, since
which release, and when it can go (when the declared minimum passes that release). CI runs the whole suite on the
minimum and on the newest release, and ``tests/moss/test_private_generation_helpers.py`` pins the private helpers we rely on.

=========================================================  ===========  ========================================
difference                                                 since        delete when
=========================================================  ===========  ========================================
KV cache keyword and output field ``past_key_values`` ->   5.24         minimum >= 5.24 (then: always ``cache``)
``cache``: ``generate`` passes ``cache=``, backbones take
``cache=``, ``ModelOutput`` renames a ``past_key_values=``
keyword to ``cache=`` (so no output field may be named
``past_key_values``) and stores the cache under ``cache``
decoder backbones (Qwen3, Llama) no longer take              5.24         minimum >= 5.24
``cache_position`` (derived from the cache)
``GenerationMixin._prefill(..., is_first_iteration=)``      5.x (after   minimum has it
                                                            5.0)
``prepare_inputs_for_generation(next_sequence_length=)``    5.24         minimum >= 5.24
``gradient_checkpointing`` (TrainingArguments, model        5.24         minimum >= 5.24 (then: always
methods) renamed ``activation_checkpointing`` (old names                 ``activation_checkpointing``)
deprecated)
Wav2Vec2-BERT encoders draw one CPU random number per      after 5.0    minimum no longer draws
layer even in eval (LayerDrop check): `cpu_rng_untouched`
=========================================================  ===========  ========================================
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from typing import Any

from transformers import GenerationMixin

__all__ = [
    "CACHE_KWARG",
    "cpu_rng_untouched",
    "accepts_cache_position",
    "backbone_cache_kwargs",
    "cache_from_kwargs",
    "decode_step_kwargs",
    "enable_activation_checkpointing",
    "output_cache",
    "prefill",
    "resolve_cache",
    "training_checkpointing_kwargs",
    "update_model_kwargs_for_generation",
]

_PREPARE_PARAMETERS = inspect.signature(GenerationMixin.prepare_inputs_for_generation).parameters

# The keyword (and model-kwargs key, and output field) that carries the KV cache in this transformers.
CACHE_KWARG = "cache" if "cache" in _PREPARE_PARAMETERS else "past_key_values"
_OLD_CACHE_KWARG = "past_key_values"


def resolve_cache(cache: Any = None, past_key_values: Any = None) -> Any:
    """The cache given under either name (``cache=`` on transformers >= 5.24, ``past_key_values=`` before).

    Raises:
        ValueError: both were given and are different objects.
    """
    if cache is not None and past_key_values is not None and cache is not past_key_values:
        raise ValueError("got both cache= and past_key_values= (two names for the same KV cache); pass only cache=")
    return cache if cache is not None else past_key_values


def cache_from_kwargs(model_kwargs: dict) -> Any:
    """The KV cache that ``generate`` prepared in ``model_kwargs`` (under whichever name this release uses)."""
    return resolve_cache(model_kwargs.get("cache"), model_kwargs.get(_OLD_CACHE_KWARG))


def output_cache(outputs: Any) -> Any:
    """The KV cache of a transformers backbone output (``BaseModelOutputWithPast`` & co), whatever the release."""
    if CACHE_KWARG == "cache":
        return getattr(outputs, "cache", None)
    return getattr(outputs, _OLD_CACHE_KWARG, None)


@functools.cache
def accepts_cache_position(module_class: type) -> bool:
    """Whether ``module_class.forward`` takes ``cache_position`` (decoder backbones before 5.24)."""
    return "cache_position" in inspect.signature(module_class.forward).parameters


def backbone_cache_kwargs(backbone: Any, cache: Any, cache_position: Any = None) -> dict:
    """Keywords that hand ``cache`` (and ``cache_position`` where the backbone still takes it) to a transformers
    decoder backbone such as ``Qwen3Model``."""
    kwargs = {CACHE_KWARG: cache}
    if cache_position is not None and accepts_cache_position(type(backbone)):
        # Older releases derive it from the cache length otherwise: a data-dependent read on static caches.
        kwargs["cache_position"] = cache_position
    return kwargs


def update_model_kwargs_for_generation(model: GenerationMixin, outputs: Any, model_kwargs: dict) -> dict:
    """``model._update_model_kwargs_for_generation`` that also carries our outputs' ``cache`` field forward.

    Our output classes name the field ``cache`` on every release (5.24's ``ModelOutput`` forbids
    ``past_key_values``); releases before 5.24 look only for ``past_key_values`` in the outputs and would
    silently drop a cache that a forward created or replaced.
    """
    model_kwargs = model._update_model_kwargs_for_generation(outputs, model_kwargs, is_encoder_decoder=False)
    cache = outputs.get("cache") if hasattr(outputs, "get") else None
    if cache is not None:
        model_kwargs[CACHE_KWARG] = cache
    return model_kwargs


def prefill(model: GenerationMixin, input_ids, generation_config, model_kwargs: dict):
    """``model._prefill`` (first forward of ``generate``) on every release."""
    if "is_first_iteration" in inspect.signature(model._prefill).parameters:
        return model._prefill(input_ids, generation_config, model_kwargs, is_first_iteration=True)
    return model._prefill(input_ids, generation_config, model_kwargs)


def decode_step_kwargs(model: GenerationMixin) -> dict:
    """Extra keywords for ``prepare_inputs_for_generation`` in the one-new-row decode steps."""
    if "next_sequence_length" in inspect.signature(model.prepare_inputs_for_generation).parameters:
        return {"next_sequence_length": 1}
    return {}


def training_checkpointing_kwargs(enabled: bool) -> dict:
    """``TrainingArguments`` keyword that turns activation (gradient) checkpointing on or off."""
    from transformers import TrainingArguments

    fields = getattr(TrainingArguments, "__dataclass_fields__", {})
    name = "activation_checkpointing" if "activation_checkpointing" in fields else "gradient_checkpointing"
    return {name: enabled}


def enable_activation_checkpointing(model) -> None:
    """``model.activation_checkpointing_enable()`` (5.24+) / ``gradient_checkpointing_enable()`` (older)."""
    enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
    enable()


@contextlib.contextmanager
def cpu_rng_untouched():
    """Run a block without consuming the global CPU random stream.

    Older releases' Wav2Vec2-BERT encoder draws ``torch.rand([])`` per layer even in eval (its LayerDrop check); wrap
    its forward so that seeded generation after it is the same on every release.
    """
    import torch

    state = torch.get_rng_state()
    try:
        yield
    finally:
        torch.set_rng_state(state)
