"""Conversation messages for codec-token TTS prompts.

A message is a plain dict ``{"role": "user" | "assistant", "content": str, "audio_codes_list": list}``. ``content`` is
text in which every ``<|audio|>`` placeholder stands for one item of ``audio_codes_list`` (in order). An audio item is
a file path, a waveform (``numpy``/``torch`` array, optionally ``(array, sampling_rate)``) or already-encoded codes
(an integer tensor ``[frames, n_vq]``); the processor turns each item into a block of code rows.

User turns use a fixed instruction template (the data format the released checkpoints were trained on; every field
that is not given renders as the string ``None``). Assistant turns are audio only (``content="<|audio|>"``).

Besides these "native" messages the module converts transformers-style chat messages, whose ``content`` is a list of
``{"type": "text", "text": ...}`` / ``{"type": "audio", "path" | "url" | "array" | "audio_codes": ...}`` parts (see
:func:`messages_from_chat`).
"""

from __future__ import annotations

import numbers
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

AUDIO_PLACEHOLDER = "<|audio|>"

# The template of the released checkpoints: exact bytes matter (the model was trained on them).
USER_TEMPLATE = (
    "<user_inst>\n"
    "- Reference(s):\n{reference}\n"
    "- Instruction:\n{instruction}\n"
    "- Tokens:\n{tokens}\n"
    "- Quality:\n{quality}\n"
    "- Sound Event:\n{sound_event}\n"
    "- Ambient Sound:\n{ambient_sound}\n"
    "- Language:\n{language}\n"
    "- Text:\n{text}\n"
    "</user_inst>"
)

_TEMPLATE_FIELD = re.compile(r"\{(reference|instruction|tokens|quality|sound_event|ambient_sound|language|text)\}")

# Keyword fields of a user turn (also accepted as keys of a dict message without "content").
USER_FIELDS = ("text", "reference", "instruction", "tokens", "quality", "sound_event", "ambient_sound", "language")


def _render_references(reference: list | None) -> str:
    """``[S{i+1}]:\\n<|audio|>`` per non-None entry; ``None`` entries keep their speaker number."""
    if reference is None:
        return "None"
    lines = [f"[S{i + 1}]:\n{AUDIO_PLACEHOLDER}" for i, item in enumerate(reference) if item is not None]
    return "\n".join(lines) if lines else "None"


def build_user_message(
    text: str | None = None,
    reference: Any = None,
    instruction: str | None = None,
    tokens: int | None = None,
    quality: str | None = None,
    sound_event: str | None = None,
    ambient_sound: str | None = None,
    language: str | None = None,
    *,
    normalize_text: bool = False,
) -> dict:
    """Build a user turn from the template fields.

    Args:
        text: the text to speak. Inline markers such as ``[S1]``, ``[pause 1.2s]`` are kept verbatim.
        reference: one reference voice or a list of them (one per speaker ``[S1]``, ``[S2]``, ...; ``None`` entries
            skip a speaker but keep the numbering). Each item is a path, a waveform or codes ``[frames, n_vq]``.
        instruction: free-form voice/style description (voice design).
        tokens: desired duration in audio frames (12.5 per second); conditioning only, nothing enforces it.
        quality, sound_event, ambient_sound: extra conditioning fields of the template.
        language: language name, e.g. ``"English"``, ``"French"``.
        normalize_text: run the robustness text normalisation on ``text`` (the Delay checkpoints were trained with it;
            the processor passes its ``normalize_text`` setting).

    Returns:
        ``{"role": "user", "content": str, "audio_codes_list": [non-None references]}``.
    """
    if reference is not None and not isinstance(reference, list):
        reference = [reference]
    if tokens is not None:
        if isinstance(tokens, bool) or not isinstance(tokens, numbers.Integral):
            raise TypeError(f"tokens must be an int (number of audio frames), got {type(tokens).__name__}")
        if tokens < 0:
            raise ValueError(f"tokens must be a non-negative number of audio frames, got {tokens}")
        tokens = int(tokens)
    if text is not None:
        if not isinstance(text, str):
            raise TypeError(f"text must be a string, got {type(text).__name__}")
        if normalize_text:
            from .text_normalization import normalize_tts_text

            text = normalize_tts_text(text)
    values = {
        "reference": _render_references(reference),
        "instruction": instruction,
        "tokens": tokens,
        "quality": quality,
        "sound_event": sound_event,
        "ambient_sound": ambient_sound,
        "language": language,
        "text": text,
    }
    # One pass over the template only: braces inside user-provided fields are never substituted (the reference
    # substitutes field after field, so a literal "{text}" inside an instruction would have been replaced).
    content = _TEMPLATE_FIELD.sub(lambda m: str(values[m.group(1)]), USER_TEMPLATE)
    audio = [item for item in reference if item is not None] if reference is not None else []
    return {"role": "user", "content": content, "audio_codes_list": audio}


def build_assistant_message(audio_codes_list: Any, content: str = AUDIO_PLACEHOLDER) -> dict:
    """Build an assistant turn holding audio (a prefix to continue, or a previous answer in a multi-turn prompt).

    Args:
        audio_codes_list: one audio item or a list of them (paths, waveforms or codes ``[frames, n_vq]``).
        content: text with one ``<|audio|>`` placeholder per item.
    """
    if not isinstance(audio_codes_list, list):
        audio_codes_list = [audio_codes_list]
    return {"role": "assistant", "content": content, "audio_codes_list": audio_codes_list}


def normalize_message(message: Mapping, *, normalize_text: bool = False) -> dict:
    """Validate one message; dicts without ``content`` are built from the template keyword fields."""
    if not isinstance(message, Mapping):
        raise TypeError(f"a message must be a dict, got {type(message).__name__}")
    role = message.get("role")
    if role not in ("user", "assistant"):
        raise ValueError(f"message role must be 'user' or 'assistant', got {role!r}")
    if "content" in message and not isinstance(message["content"], str):
        # transformers-style list of typed parts
        return messages_from_chat([message], normalize_text=normalize_text)[0]
    if "content" not in message or "audio_codes_list" not in message:
        if role == "user":
            unknown = set(message) - set(USER_FIELDS) - {"role"}
            if unknown:
                raise ValueError(f"unknown user message keys {sorted(unknown)}; expected some of {USER_FIELDS}")
            fields = {k: message[k] for k in USER_FIELDS if k in message}
            return build_user_message(**fields, normalize_text=normalize_text)
        return build_assistant_message(message.get("audio_codes_list", []), message.get("content", AUDIO_PLACEHOLDER))
    audio = message["audio_codes_list"]
    audio = list(audio) if isinstance(audio, (list, tuple)) else [audio]
    n_placeholders = message["content"].count(AUDIO_PLACEHOLDER)
    if n_placeholders != len(audio):
        raise ValueError(
            f"{role} message has {n_placeholders} {AUDIO_PLACEHOLDER} placeholder(s) but {len(audio)} audio item(s)"
        )
    return {"role": role, "content": message["content"], "audio_codes_list": audio}


_RUN_OF_PLACEHOLDERS = re.compile(rf"{re.escape(AUDIO_PLACEHOLDER)}(?:\s*{re.escape(AUDIO_PLACEHOLDER)})+")


def merge_adjacent_placeholders(content: str, items: list) -> tuple[str, list[list]]:
    """Group items whose placeholders are separated only by whitespace (they become one time-concatenated block).

    Returns the content with each run replaced by a single placeholder, and one list of items per placeholder.
    (Reference behaviour; never triggers with the ``[S1]:``/``[S2]:`` reference template.)
    """
    groups: list[list] = []
    pieces: list[str] = []
    pos = 0
    item_index = 0
    for match in re.finditer(rf"{_RUN_OF_PLACEHOLDERS.pattern}|{re.escape(AUDIO_PLACEHOLDER)}", content):
        count = match.group(0).count(AUDIO_PLACEHOLDER)
        groups.append(items[item_index : item_index + count])
        item_index += count
        pieces.append(content[pos : match.start()])
        pieces.append(AUDIO_PLACEHOLDER)
        pos = match.end()
    pieces.append(content[pos:])
    return "".join(pieces), groups


# ---------------------------------------------------------------------------------------------------------------------
# transformers-style chat messages
# ---------------------------------------------------------------------------------------------------------------------


def _audio_part_item(part: Mapping) -> Any:
    """The audio item of a ``{"type": "audio", ...}`` part."""
    for key in ("audio_codes", "path", "url", "audio"):
        if part.get(key) is not None:
            value = part[key]
            if key == "url" and isinstance(value, str) and value.startswith(("http://", "https://")):
                raise ValueError("remote audio URLs are not fetched; download the file and pass its path")
            return value
    if part.get("array") is not None:
        rate = part.get("sampling_rate", part.get("sample_rate"))
        if rate is None:
            raise ValueError('an {"type": "audio", "array": ...} part needs "sampling_rate"')
        return (part["array"], int(rate))
    raise ValueError(f"audio part needs one of 'path', 'url', 'array' (+ 'sampling_rate') or 'audio_codes': {part!r}")


def messages_from_chat(conversation: Sequence[Mapping], *, normalize_text: bool = False) -> list[dict]:
    """Convert transformers-style chat messages to native messages.

    * ``user``: the text parts (joined) are the text to speak; the audio parts are the reference voices
      (``[S1]``, ``[S2]``, ... in order). Template fields may be given as extra message keys
      (``{"role": "user", "content": [...], "language": "French", "instruction": ..., "tokens": 50}``).
    * ``assistant``: audio parts are assistant audio (a prefix for ``mode="continuation"``); text parts are ignored
      (the transcript of a prefix belongs in the user text).
    * ``system`` messages are rejected: the checkpoints were trained without a system prompt.
    A plain string ``content`` on a user message is the text to speak.
    """
    messages = []
    for message in conversation:
        if not isinstance(message, Mapping):
            raise TypeError(f"a chat message must be a dict, got {type(message).__name__}")
        role = message.get("role")
        content = message.get("content")
        if role not in ("user", "assistant"):
            raise ValueError(f"chat role must be 'user' or 'assistant' (no system prompt is used), got {role!r}")
        if isinstance(content, str):
            parts = [{"type": "text", "text": content}]
        elif isinstance(content, Sequence):
            parts = list(content)
        else:
            raise TypeError(f"chat message content must be a string or a list of parts, got {type(content).__name__}")
        texts, audio = [], []
        for part in parts:
            kind = part.get("type") if isinstance(part, Mapping) else None
            if kind == "text":
                texts.append(str(part.get("text", "")))
            elif kind == "audio":
                audio.append(_audio_part_item(part))
            else:
                raise ValueError(f"unsupported chat content part {part!r}; use type 'text' or 'audio'")
        if role == "user":
            extra = {k: message[k] for k in USER_FIELDS if k in message and k not in ("text", "reference")}
            messages.append(
                build_user_message(
                    text="".join(texts) if texts else None,
                    reference=audio or None,
                    normalize_text=normalize_text,
                    **extra,
                )
            )
        else:
            if not audio:
                raise ValueError("an assistant chat message needs at least one audio part")
            messages.append(build_assistant_message(audio, AUDIO_PLACEHOLDER * len(audio)))
    return messages


def is_path_like(item: Any) -> bool:
    return isinstance(item, (str, os.PathLike))
