"""Tokenize a chat message so that text written by the user is never parsed as control tokens.

A tokenizer turns every occurrence of a special token's string (``<|im_end|>``, ``<|audio_start|>``, ...) into that
token, wherever the string came from. Rendering a prompt with the chat template and encoding the result would
therefore let text that is meant to be spoken end the turn, open a fake assistant turn or an audio block (prompt
injection, and silently wrong prompts). Here a message is a list of segments, each either *user text* or a
*control block* that the processor itself built (audio start/slot/end tokens); the chat template's own text is
trusted too. Special tokens are recognised only in trusted text; user text is encoded literally
(``split_special_tokens=True``).

Tokenization is otherwise unchanged: the tokenizer itself splits its input at special tokens before anything else,
so encoding the stretches between trusted control tokens one by one gives exactly the ids of encoding the whole
string whenever the user text holds no special-token string (and that common case takes the plain path).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

# Stands for the message content while the chat template is rendered, to find what the template adds around it.
_CONTENT_SENTINEL = "\ue000codectts-message-content\ue001"


class ControlTokenInTextError(ValueError):
    """User text contains a control token's string and the chat template hides where the text lies."""


def control_token_strings(tokenizer) -> list[str]:
    """The strings that the tokenizer turns into special tokens, longest first (for regex alternation)."""
    decoder = getattr(tokenizer, "added_tokens_decoder", None) or {}
    tokens = {str(t.content) for t in decoder.values() if getattr(t, "special", False)}
    tokens.update(str(t) for t in getattr(tokenizer, "all_special_tokens", []) or [])
    return sorted((t for t in tokens if t), key=len, reverse=True)


def _pattern(strings: list[str]) -> re.Pattern | None:
    return re.compile("|".join(re.escape(s) for s in strings)) if strings else None


def find_control_tokens(tokenizer, text: str) -> list[str]:
    """Control-token strings that occur in ``text`` (in order of occurrence)."""
    pattern = _pattern(control_token_strings(tokenizer))
    return pattern.findall(text) if pattern else []


def encode_message(
    tokenizer,
    chat_template: str,
    role: str,
    segments: Sequence[tuple[str, bool]],
    add_generation_prompt: bool,
) -> list[int]:
    """Token ids of one chat-template-wrapped message.

    Args:
        segments: ``(text, is_control)`` pairs that make up the message content, in order: ``is_control=True`` for
            text the caller built from control tokens (parsed as such), ``False`` for user text (always literal).
    """
    content = "".join(text for text, _ in segments)

    def render(body: str) -> str:
        return tokenizer.apply_chat_template(
            [{"role": role, "content": body}],
            chat_template=chat_template,
            add_generation_prompt=add_generation_prompt,
            tokenize=False,
        )

    rendered = render(content)
    pattern = _pattern(control_token_strings(tokenizer))
    user_text = [text for text, control in segments if not control]
    if pattern is None or not any(pattern.search(text) for text in user_text):
        return tokenizer.encode(rendered, add_special_tokens=False)  # nothing to protect: the plain path

    framed = render(_CONTENT_SENTINEL)
    if framed.count(_CONTENT_SENTINEL) != 1 or framed.replace(_CONTENT_SENTINEL, content) != rendered:
        found = sorted({m for text in user_text for m in pattern.findall(text)})
        raise ControlTokenInTextError(
            f"the text contains control-token strings {found}, which this chat template does not let codectts "
            "keep literal; remove them from the text"
        )
    prefix, suffix = framed.split(_CONTENT_SENTINEL)
    trusted = [(prefix, True), *segments, (suffix, True)]

    ids: list[int] = []
    pending = ""  # text between trusted control tokens, encoded literally as one stretch

    def flush() -> None:
        nonlocal pending
        if pending:
            ids.extend(tokenizer.encode(pending, add_special_tokens=False, split_special_tokens=True))
            pending = ""

    for text, is_trusted in trusted:
        if not is_trusted:
            pending += text
            continue
        position = 0
        for match in pattern.finditer(text):
            pending += text[position : match.start()]
            flush()
            ids.append(tokenizer.convert_tokens_to_ids(match.group(0)))
            position = match.end()
        pending += text[position:]
    flush()
    return ids
