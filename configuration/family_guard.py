"""Refuse a configuration of another model family *before* any weights are built.

transformers' ``Config.from_pretrained`` only logs a warning when a folder's ``model_type`` differs from the class
that loads it, then builds the class's default configuration, i.e. ``SomeModel.from_pretrained(folder_of_another_
family)`` silently instantiates a default-sized model (several billion parameters for a TTS generator) before
failing on the weights, or is killed for memory. Every codectts configuration class mixes in
:class:`RefuseOtherFamilyMixin`, so that loading a folder whose ``config.json`` names another ``model_type`` raises
:class:`WrongModelFamilyError` naming both types and the class to use.
"""

from __future__ import annotations

from typing import Any


class WrongModelFamilyError(ValueError):
    """A folder holds a model of another family than the class asked to load it."""


def check_model_type(config_class: type, config_dict: Any) -> None:
    """Raise :class:`WrongModelFamilyError` unless ``config_dict`` is a dict for ``config_class`` (same
    ``model_type``, or none given)."""
    if not isinstance(config_dict, dict):
        raise TypeError(f"a configuration must be a JSON object (dict), got {type(config_dict).__name__}")
    expected = getattr(config_class, "model_type", None)
    found = config_dict.get("model_type")
    if not expected or found in (None, "", expected):
        return
    hint = (
        "it is an original checkpoint: convert it first with `codectts convert`"
        if isinstance(found, str) and found.startswith("moss")
        else "load it with AutoModel / AutoConfig (after `import codectts`), which pick the right class"
    )
    raise WrongModelFamilyError(
        f"{config_class.__name__} expects a configuration with model_type {expected!r}, but this one has "
        f"model_type {found!r} (a model of another family); {hint}"
    )


class RefuseOtherFamilyMixin:
    """Put first in the bases of a ``PreTrainedConfig`` subclass: ``from_dict`` (used by ``from_pretrained``)
    refuses another family's configuration instead of falling back to defaults."""

    @classmethod
    def from_dict(cls, config_dict, **kwargs):
        check_model_type(cls, config_dict)
        return super().from_dict(config_dict, **kwargs)
