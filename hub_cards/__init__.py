"""Model cards (``README.md``) for exported models: one template per family, rendered with the Hub metadata.

``render_model_card(family, ...)`` fills ``<family>.md`` (``codec``, ``delay``, ``local``) and prepends the YAML
metadata block that the Hub reads (``library_name``, ``pipeline_tag``, ``license``, ``language``, ``tags``,
``base_model``), written by ``huggingface_hub.ModelCardData`` so that it is always valid. The templates use
``string.Template`` placeholders (``${repo_id}``, ...; a literal dollar is ``$$``); every placeholder must be filled.

The usage snippet of a card is what the export tests execute (``extract_usage_snippet``), so the card cannot drift
from the code.
"""

from __future__ import annotations

import re
import string
from importlib import resources
from typing import Any

FAMILIES = ("codec", "delay", "local")

PIPELINE_TAGS = {"codec": "feature-extraction", "delay": "text-to-speech", "local": "text-to-speech"}
DEFAULT_LANGUAGES = {"codec": None, "delay": ["zh", "en"], "local": ["zh", "en"]}
FAMILY_TAGS = {
    "codec": ["audio", "audio-tokenizer", "neural-codec", "speech"],
    "delay": ["text-to-speech", "audio", "voice-cloning", "delay-pattern"],
    "local": ["text-to-speech", "audio", "voice-cloning", "local-transformer"],
}
COMMON_TAGS = ["codectts", "moss-tts", "custom_code"]

# Generation settings shown in the card's presets table, in this order; any other key with one of the
# `_SAMPLING_WORDS` in its name is shown after them.
_PRESET_KEYS = ("do_sample", "temperature", "top_p", "top_k", "repetition_penalty", "max_new_tokens")
_SAMPLING_WORDS = ("temperature", "top_p", "top_k", "penalty", "do_sample", "preset")

# Model facts shown in the card when the config has them: (dotted config key, label).
_FACTS = (
    ("sampling_rate", "audio sampling rate (Hz)"),
    ("downsample_rate", "audio samples per code frame"),
    ("num_quantizers", "RVQ codebooks"),
    ("codebook_size", "codebook size"),
    ("n_vq", "RVQ codebooks generated"),
    ("num_audio_channels", "RVQ codebooks generated"),
    ("audio_vocab_size", "audio vocabulary per codebook"),
    ("text_config.vocab_size", "text vocabulary"),
    ("text_config.hidden_size", "backbone hidden size"),
    ("text_config.num_hidden_layers", "backbone layers"),
    ("local_num_layers", "local transformer layers"),
    ("local_hidden_size", "local transformer hidden size"),
    ("dtype", "weights dtype"),
)


def render_model_card(
    family: str,
    *,
    repo_id: str,
    config: dict[str, Any],
    generation_config: dict[str, Any] | None = None,
    base_model: str | None = None,
    has_processor: bool = False,
    codec_location: str | None = None,
    license: str = "apache-2.0",
    languages: list[str] | None = None,
    tags: list[str] | None = None,
    model_name: str | None = None,
) -> str:
    """The ``README.md`` text of an exported model.

    Args:
        family: ``"codec"``, ``"delay"`` or ``"local"``.
        repo_id: Hub id that the usage snippet loads from.
        config: the exported ``config.json`` content.
        generation_config: the exported ``generation_config.json`` content (sampling presets), if any.
        base_model: Hub id of the original checkpoint the weights were converted from.
        has_processor: whether the repository has processor files (generators: needed by the snippet).
        codec_location: ``"audio_tokenizer"`` (subfolder) or the Hub id of the codec (generators).
        license, languages, tags: Hub metadata (defaults per family; ``tags`` are added to the defaults).
        model_name: title of the card (default: the last part of ``repo_id``).
    """
    from huggingface_hub import ModelCardData

    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; expected one of {FAMILIES}")
    if family != "codec" and not has_processor:
        raise ValueError(
            f"a {family} model card needs the processor (its usage snippet tokenizes text and decodes audio); "
            "export the model together with its processor"
        )
    if family != "codec" and not codec_location:
        raise ValueError(f"a {family} model card needs the codec: a subfolder or the Hub id of an exported codec")
    metadata = ModelCardData(
        library_name="transformers",
        pipeline_tag=PIPELINE_TAGS[family],
        license=license,
        language=languages if languages is not None else DEFAULT_LANGUAGES[family],
        tags=_unique(COMMON_TAGS + FAMILY_TAGS[family] + list(tags or [])),
        base_model=base_model,
    )
    values = {
        "repo_id": repo_id,
        "model_name": model_name or repo_id.rstrip("/").split("/")[-1],
        "origin": _origin(base_model),
        "codec_note": _codec_note(codec_location),
        "load_processor": _load_processor(repo_id, codec_location),
        "facts": _facts_table(config),
        "presets": _presets_table(generation_config),
        "citation": _template_text("citation.md"),
    }
    body = string.Template(_template_text(f"{family}.md")).substitute(values)
    return f"---\n{metadata.to_yaml()}\n---\n\n{body.strip()}\n"


def extract_usage_snippet(card: str) -> str:
    """The first ```python block of the card's ``## Usage`` section (what a reader copies and runs)."""
    section = re.search(r"^## Usage\s*$(.*?)(?=^## |\Z)", card, flags=re.MULTILINE | re.DOTALL)
    if section is None:
        raise ValueError("the model card has no '## Usage' section")
    block = re.search(r"^```python\n(.*?)^```\s*$", section.group(1), flags=re.MULTILINE | re.DOTALL)
    if block is None:
        raise ValueError("the model card's '## Usage' section has no ```python block")
    return block.group(1)


def _template_text(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _origin(base_model: str | None) -> str:
    if not base_model:
        return "The weights were converted to the codectts layout; they are not tied to a published checkpoint."
    return (
        f"The weights are those of [{base_model}](https://huggingface.co/{base_model}), converted to the codectts "
        "layout (same numbers, different module names)."
    )


def _load_processor(repo_id: str, codec_location: str | None) -> str:
    """Snippet lines that load the processor with its codec (from this repo's subfolder or the codec's own repo)."""
    if codec_location is None or "/" not in codec_location:
        return f'processor = AutoProcessor.from_pretrained("{repo_id}", trust_remote_code=True)  # text tokenizer + audio codec'
    return (
        f'codec = AutoModel.from_pretrained("{codec_location}", trust_remote_code=True).eval()\n'
        f'processor = AutoProcessor.from_pretrained("{repo_id}", audio_tokenizer=codec, trust_remote_code=True)'
    )


def _codec_note(codec_location: str | None) -> str:
    if codec_location is None:
        return ""
    if "/" in codec_location:
        return (
            f"The audio codec lives in its own repository, [{codec_location}](https://huggingface.co/{codec_location})."
        )
    return f"The audio codec ships with this repository, in `{codec_location}/`, and loads on its own as well."


def _lookup(config: dict[str, Any], dotted: str):
    value: Any = config
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _facts_table(config: dict[str, Any]) -> str:
    rows, labels = [], set()
    for key, label in _FACTS:
        value = _lookup(config, key)
        if value is not None and not isinstance(value, (dict, list)) and label not in labels:
            rows.append(f"| {label} | `{value}` |")
            labels.add(label)
    architectures = config.get("architectures") or []
    if architectures:
        rows.insert(0, f"| architecture | `{architectures[0]}` |")
    return "| | |\n|---|---|\n" + "\n".join(rows) if rows else "See `config.json`."


def _presets_table(generation_config: dict[str, Any] | None) -> str:
    if not generation_config:
        return "This model does not generate: it has no sampling settings."
    keys = [k for k in _PRESET_KEYS if k in generation_config]
    keys += sorted(
        k
        for k in generation_config
        if k not in keys and any(word in k for word in _SAMPLING_WORDS) and generation_config[k] is not None
    )
    if not keys:
        return "`generation_config.json` holds the defaults that `generate()` uses."
    rows = "\n".join(f"| `{k}` | `{_format_value(generation_config[k])}` |" for k in keys)
    return (
        "`generate()` uses these settings from `generation_config.json` unless you pass others:\n\n"
        f"| setting | value |\n|---|---|\n{rows}"
    )


def _format_value(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)
