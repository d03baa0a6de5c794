"""Robustness-only text clean-up for the Delay processor (MOSS-TTS ``normalize_tts_text``, spec §6.7).

The Delay processor runs every user ``text`` through :func:`normalize_tts_text` before rendering the user template
(spec §6.1; Local models do not). The goal is *robustness*, not verbalisation: numbers, dates, units and symbols are
left alone; the function only removes things a TTS model was never trained to read (Markdown syntax, control
characters, runs of punctuation, stray spaces) while keeping tokens whose exact spelling matters (URLs, e-mails,
file names, version numbers, ``[S1]`` speaker tags, ``[pause 3.2s]`` markers) untouched.

Pipeline (the order of the spec; each group is one function below):

1. :func:`_clean_characters`: line endings, ideographic space, zero-width / control characters.
2. :func:`_strip_markdown`: links, line markers (headings, quotes, bullets, numbered lists), empty lines; the remaining
   lines are joined with ``。`` (so every line break becomes a sentence boundary).
3. :class:`_ProtectedSpans`: URLs, e-mails, mentions, ``u/…``/``r/…``, hashtags, dot-tokens, file/version-like
   tokens (word-like next to CJK) and ``[...]``/``{...}`` tags (opaque) are swapped for placeholders.
4. :func:`_normalize_spaces`: collapse whitespace; CJK/kana/digit/Latin spacing; no space before closing marks,
   after opening and pause marks, or before ASCII ``,.;!?``.
5. :func:`_normalize_structural_punctuation`: arrows → ``，``, dash runs → ``。``, ``【…】``-style headers at a sentence
   start → content + ``。``, standalone ``《title》`` unwrapped.
6. :func:`_normalize_repeated_punctuation`: ellipses → ``。``, repeated ``。，！？`` collapsed, mixed ``?!`` → ``？！``.
7. Second space pass, placeholders restored, outer whitespace stripped.

The result is idempotent: ``normalize_tts_text(normalize_tts_text(x)) == normalize_tts_text(x)``.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable

__all__ = ["normalize_tts_text"]


# ----------------------------------------------------------------------------------------------------------------
# Character classes (regex fragments, used inside [...]).
# ----------------------------------------------------------------------------------------------------------------

# Han ideographs (+ radicals, iteration/number marks), kana and bopomofo: scripts written without spaces.
# Hangul is deliberately absent: Korean separates words with spaces.
_CJK = (
    "\u2e80-\u2eff\u2f00-\u2fdf\u3005\u3007\u3021-\u3029\u3038-\u303b"
    "\u3040-\u309f\u30a0-\u30ff\u3100-\u312f\u31a0-\u31bf\u31f0-\u31ff"
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f\U00020000-\U0003134f"
)
_DIGIT = "0-9\uff10-\uff19"
_DASH = "\\-\u2010-\u2015\uff0d"  # - ‐ ‑ ‒ – — ― －

# ----------------------------------------------------------------------------------------------------------------
# Placeholders for protected spans.
#
# A placeholder is three private-use characters: <kind> <index> <kind>. The index character identifies the span (one
# code point in planes 15-16, so up to 131072 spans). The kind tells the spacing rules what the span is: a Latin-like
# word (every protected token: the original swaps them for a word-like placeholder *before* its spacing rules run,
# so next to CJK they always get one space, whatever their own first/last characters), or opaque (the [...]/{...}
# tags, which the original does not protect: its rules find nothing to space around their brackets). The
# punctuation rules never match private-use characters, so a span's interior is untouchable. Step 1 deletes every
# private-use character of the input (category Co), so placeholders cannot collide with user text.
# ----------------------------------------------------------------------------------------------------------------

_KIND_LATIN, _KIND_OTHER = "\ue000", "\ue003"
_INDEX_BASE = 0xF0000
_MAX_SPANS = 0x110000 - _INDEX_BASE
_PLACEHOLDER = re.compile("[\ue000\ue003]([\U000f0000-\U0010ffff])[\ue000\ue003]")

def _until_stable(rewrite: Callable[[str], str], text: str) -> str:
    """Apply ``rewrite`` until the text stops changing.

    Used by the rules whose output can create a new match (a link nested in a link's text, a bracket pair nested in
    an unwrapped one): a single pass would leave work for a second call and break idempotence. Each of those
    rewrites removes a bracket pair, so this terminates.
    """
    while True:
        new = rewrite(text)
        if new == text:
            return text
        text = new


# ----------------------------------------------------------------------------------------------------------------
# 1. Characters
# ----------------------------------------------------------------------------------------------------------------

# CR/CRLF are line breaks; so are the Unicode line/paragraph separators (Zl/Zp, not control characters, so the
# control-character rule would keep them inside a line otherwise).
_LINE_BREAK = re.compile("\r\n?|[\u2028\u2029]")
_ASCII_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f]")


def _clean_characters(text: str) -> str:
    """CRLF/CR → LF, ideographic space → space, drop zero-width and every other ``C*`` character except ``\\n\\t``.

    Zero-width characters (ZWSP, ZWJ, BOM, ...) are format characters (``Cf``), so one rule covers both. Note that
    ``Cn`` (unassigned) depends on the Unicode version of the running Python.
    """
    text = _LINE_BREAK.sub("\n", text).replace("\u3000", " ")
    if text.isascii():  # fast path for the common case
        return _ASCII_CONTROL.sub("", text)
    return "".join(ch for ch in text if ch in "\n\t" or unicodedata.category(ch)[0] != "C")


# ----------------------------------------------------------------------------------------------------------------
# 2. Markdown and lines
# ----------------------------------------------------------------------------------------------------------------

# [text](target) → "text target". The target may contain spaces (a Markdown link title, `[t](url "title")`) and
# balanced parentheses (Wikipedia URLs). Were spaces excluded, "[t](a ,b)" would be left alone, become "[t](a,b)"
# through the space rules and turn into a link on a second call; line breaks are allowed for the same reason ("[\n]()"
# becomes "[。]()" once the lines are joined). Innermost first (the text has no brackets); applied until nothing
# changes so that nested links end up flat too.
_MARKDOWN_LINK = re.compile(r"\[([^\[\]]*)\]\(((?:[^()]|\([^()]*\))*)\)")
# One block marker at the start of a (stripped) line: heading "#"…"######", quote ">", bullet "-*+", "1." / "1)".
# Markers need whitespace after them, as in the original, so "#hashtag", "-5", "*bold*", "3.5", a bare "3." and a
# line that is only "#" or ">" are not markers. "1 . item" is one too: the space rules would turn it into "1. item" and a second
# call would then strip it. Applied repeatedly: "> - item", "1. # x" lose every marker.
_LINE_MARKER = re.compile(r"(?:#{1,6}|>|[-*+]|\d+(?:\s*\.|\)))(?=\s)\s*")


def _strip_line_markers(line: str) -> str:
    line = line.strip()
    while (match := _LINE_MARKER.match(line)) is not None:
        line = line[match.end() :].strip()
    return line


def _strip_markdown(text: str) -> str:
    """Markdown links → ``text url``, strip line markers, drop empty lines, join the lines with ``。``."""
    text = _until_stable(functools.partial(_MARKDOWN_LINK.sub, r"\1 \2"), text)
    lines = (_strip_line_markers(line) for line in text.split("\n"))
    return "。".join(line for line in lines if line)


# ----------------------------------------------------------------------------------------------------------------
# 3. Protected spans
# ----------------------------------------------------------------------------------------------------------------


_TAG = re.compile(r"\[[^\[\]]*\]|\{[^{}]*\}")  # [S1], [pause 3.2s], {laugh}: model control tags
# The protected token kinds of the original, in its order. Their extents are the original's, including its surprises:
# a URL runs until whitespace or CJK sentence punctuation (so "https://x.com获取" is one token) and a hashtag until
# whitespace or "#"; a file/version token needs a Latin letter and one of ._/+:- ("v1.2.3", "a-b", "src/x.py").
_LATINISH_RUN = "A-Za-z0-9._/+:\\-"
_PROTECTED = (
    re.compile("https?://[^\\s\u3000，。！？；、）】》〉」』]+"),  # URLs
    re.compile(r"(?<![\w.+\-\ue000])[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}(?![\w.\-\ue000])"),  # e-mail addresses
    re.compile(r"(?<![A-Za-z0-9_\ue000])@[A-Za-z0-9_]{1,32}"),  # @mentions
    re.compile(r"(?<![A-Za-z0-9_\ue000])[ur]/[A-Za-z0-9_]+"),  # u/name, r/name
    # #hashtags; unlike the original, one must start with a word character ("#." is not one: a second pass would
    # then space it differently, and the result must be idempotent)
    re.compile(r"(?<![A-Za-z0-9_\ue000])#(?=\w)[^\s#]+"),
    re.compile(r"(?<![A-Za-z0-9_\ue000])\.(?=[A-Za-z0-9._-]*[A-Za-z0-9])[A-Za-z0-9._-]+"),  # .env, .tar.gz
    re.compile(  # file- and version-like tokens
        f"(?<![A-Za-z0-9_\ue000])(?=[{_LATINISH_RUN}]*[A-Za-z])(?=[{_LATINISH_RUN}]*[._/+:-])"
        f"[A-Za-z0-9](?:[{_LATINISH_RUN}]*[A-Za-z0-9])?(?![A-Za-z0-9_\ue000])"
    ),
)


class _ProtectedSpans:
    """Swaps spans that must not be touched for placeholders (see the comment on placeholders) and back."""

    def __init__(self) -> None:
        self.spans: list[str] = []

    def _placeholder(self, span: str, latin_like: bool = True) -> str:
        if len(self.spans) >= _MAX_SPANS:
            raise ValueError(f"text has more than {_MAX_SPANS} protected tokens (URLs, tags, file names, ...)")
        index = chr(_INDEX_BASE + len(self.spans))
        self.spans.append(span)
        # The original swaps a protected span for a word-like placeholder before the spacing rules run, so next to
        # CJK every protected span spaces like a Latin word (访问 https://x.com 获取, 版本 v1.2.3 发布, 以及 #话题),
        # whatever its own edge characters; [...]/{...} tags are not protected there and keep their spacing.
        kind = _KIND_LATIN if latin_like else _KIND_OTHER
        return kind + index + kind

    def _protect_match(self, match: re.Match, latin_like: bool = True) -> str:
        return self._placeholder(match.group(0), latin_like)

    def protect(self, text: str) -> str:
        for pattern in _PROTECTED:
            text = pattern.sub(self._protect_match, text)
        # tags last, as opaque spans (the original leaves them to its rules, which find nothing to change in them)
        return _TAG.sub(functools.partial(self._protect_match, latin_like=False), text)

    def restore(self, text: str) -> str:
        # a span may hold earlier spans (a hashtag swallowing a URL, a tag holding "3.2s"): restore until none is left
        # (the original leaks such inner placeholders into its output)
        text = _until_stable(lambda t: _PLACEHOLDER.sub(lambda m: self.spans[ord(m.group(1)) - _INDEX_BASE], t), text)
        if any("\ue000" <= ch <= "\ue003" or ch >= "\U000f0000" for ch in text):  # pragma: no cover
            raise RuntimeError("internal error: a protected span lost its placeholder during normalization")
        return text


# ----------------------------------------------------------------------------------------------------------------
# 4. / 7. Spaces
# ----------------------------------------------------------------------------------------------------------------

_WHITESPACE_RUN = re.compile(r"\s+")
_SPACE_BETWEEN_CJK = re.compile(f"(?<=[{_CJK}]) (?=[{_CJK}])")
_SPACE_BETWEEN_CJK_AND_DIGIT = re.compile(f"(?<=[{_CJK}]) (?=[{_DIGIT}])|(?<=[{_DIGIT}]) (?=[{_CJK}])")
# A "Latin-ish" token, as the original defines it: a run of ASCII letters, digits and ._/+:- that holds a letter
# (Python, 3D, v2, a.txt) or a protected span. Between CJK and such a token there is one space (用 Python 写,
# 打印 3D 模型, 版本 v1.2.3 发布); plain numbers (共3个, 1.2) and other scripts (é, Ω) are not tokens of this kind.
_LATINISH_CHARS = "A-Za-z0-9._/+:\\-"
_CJK_BEFORE_LATINISH = re.compile(f"(?<=[{_CJK}])(?={_KIND_LATIN}|(?=[{_LATINISH_CHARS}]*[A-Za-z])[A-Za-z0-9])")
_LATINISH_BEFORE_CJK = re.compile(f"({_KIND_LATIN}|[{_LATINISH_CHARS}]+)(?=[{_CJK}])")
_HAS_ASCII_LETTER = re.compile("[A-Za-z\ue000]")
# The original's three punctuation rules: no space before a closing mark, after an opening mark, or after a pause.
_SPACE_BEFORE_CLOSING = re.compile(" ([，。！？；：、”’」』】）》])")
_SPACE_AFTER_OPENING = re.compile("([（【「『《“‘]) ")
_SPACE_AFTER_PAUSE = re.compile("([，。！？；：、]) ")
_SPACE_BEFORE_ASCII_PUNCT = re.compile(r" ([,.;!?])")


def _space_after_latinish(match: re.Match) -> str:
    token = match.group(1)
    return token + " " if _HAS_ASCII_LETTER.search(token) else token


def _normalize_spaces(text: str) -> str:
    """Collapse whitespace (tabs included) and apply the CJK spacing conventions."""
    text = _WHITESPACE_RUN.sub(" ", text)
    text = _SPACE_BETWEEN_CJK.sub("", text)  # 你 好 → 你好
    text = _SPACE_BETWEEN_CJK_AND_DIGIT.sub("", text)  # 共 3 个 → 共3个
    text = _CJK_BEFORE_LATINISH.sub(" ", text)  # 用Python → 用 Python
    text = _LATINISH_BEFORE_CJK.sub(_space_after_latinish, text)  # Python写 → Python 写
    text = _SPACE_BEFORE_CLOSING.sub(r"\1", text)  # 你好 ， 世界 → 你好， 世界
    text = _SPACE_AFTER_OPENING.sub(r"\1", text)  # 「 你好」 → 「你好」
    text = _SPACE_AFTER_PAUSE.sub(r"\1", text)  # 你好， 世界 → 你好，世界
    return _SPACE_BEFORE_ASCII_PUNCT.sub(r"\1", text)  # Hello , world → Hello, world


# ----------------------------------------------------------------------------------------------------------------
# 5. Structural punctuation
# ----------------------------------------------------------------------------------------------------------------

# ->, -->, =>, <->, <=>, <-- and the Unicode arrow blocks (→ ⇒ ⟶ ➜ ⬅ ...). "<=" alone is "less or equal", not an arrow.
_ARROW = re.compile(
    f"<?[{_DASH}]+>|<?=+>|<[{_DASH}]+"
    "|[\u2190-\u21ff\u27f0-\u27ff\u2794\u2798-\u27af\u27b1-\u27be\u2b05-\u2b07\u2b0c\u2b0d]"
)
_DASH_RUN = re.compile(f"[{_DASH}]{{2,}}")
# What ends a sentence (a header bracket after it is at a sentence start) and what ends a clause (a book title
# between two of them stands alone).
_SENTENCE_END = "。！？!?；;.…⋯"
_CLAUSE_END = _SENTENCE_END + "，,"
_HEADER_BRACKETS = re.compile("【([^【】]+)】|〖([^〖〗]+)〗|『([^『』]+)』|「([^「」]+)」")
_STANDALONE_TITLE = re.compile(f"(^|[{_CLAUSE_END}])《([^《》]+)》(?=$|[{_CLAUSE_END}])")


def _unwrapped(at_text_start: bool, content: str) -> str:
    # Unwrapped at the very start, the content becomes the start of the first line, where step 2 strips Markdown
    # markers; strip them here too so that "「- a」" does not turn into "- a。" and then into "a。" on a second call.
    return _strip_line_markers(content) if at_text_start else content


def _headers_to_sentences(text: str) -> str:
    """One pass of "header bracket at a sentence start → content + 。"."""
    converted_end = -1

    def convert(match: re.Match) -> str:
        nonlocal converted_end
        start = match.start()
        # A header directly after a converted one is at a sentence start too (that one now ends in "。"), so a
        # chain "「a」「b」「c」" is converted in a single pass.
        if start > 0 and text[start - 1] not in _SENTENCE_END and start != converted_end:
            return match.group(0)
        converted_end = match.end()
        content = next(group for group in match.groups() if group is not None)
        return _unwrapped(start == 0, content) + "。"

    return _HEADER_BRACKETS.sub(convert, text)


def _unwrap_title(match: re.Match) -> str:
    return match.group(1) + _unwrapped(match.group(1) == "", match.group(2))


def _normalize_structural_punctuation(text: str) -> str:
    """Arrows → ``，``; dash runs → ``。``; ``【…】〖…〗『…』「…」`` at a sentence start → content + ``。``;
    standalone ``《title》`` → ``title``.

    Arrows and dashes are rewritten *before* the bracket rules (the spec lists them after): they produce the ``，``/``。``
    that decide whether a bracket starts a sentence or a title stands alone, and doing them first makes the result
    idempotent ("x——「y」" gives "x。y。" in one call instead of "x。「y」" then "x。y。").
    """
    text = _ARROW.sub("，", text)
    text = _DASH_RUN.sub("。", text)
    text = _until_stable(_headers_to_sentences, text)
    return _until_stable(functools.partial(_STANDALONE_TITLE.sub, _unwrap_title), text)


# ----------------------------------------------------------------------------------------------------------------
# 6. Repeated punctuation
# ----------------------------------------------------------------------------------------------------------------

# Ellipses: three or more ASCII dots, two or more "…" (a single "…" is kept, as is "..").
_ELLIPSIS = re.compile("\\.{3,}|…{2,}|⋯{2,}")
# "。 。" and "， ，" count as repeats too: arrows and dash runs become "，"/"。" with the spaces that surrounded them
# still in place (the second space pass removes those only afterwards).
_REPEATED_FULL_STOP = re.compile("。(?: ?。)+")
_REPEATED_COMMA = re.compile("[，,](?: ?[，,])+")
_QUESTION_EXCLAMATION_RUN = re.compile("[!?！？]{2,}")


def _collapse_question_exclamation(match: re.Match) -> str:
    run = match.group(0)
    has_question = "?" in run or "？" in run
    has_exclamation = "!" in run or "！" in run
    if has_question and has_exclamation:
        return "？！"
    return "？" if has_question else "！"


def _normalize_repeated_punctuation(text: str) -> str:
    """``...``/``……`` → ``。``; runs of ``。``, ``，``/``,``, ``！``/``!``, ``？``/``?`` → one full-width mark;
    runs mixing ``?`` and ``!`` → ``？！``. Single ASCII marks are left as they are."""
    text = _ELLIPSIS.sub("。", text)
    text = _REPEATED_FULL_STOP.sub("。", text)
    text = _REPEATED_COMMA.sub("，", text)
    return _QUESTION_EXCLAMATION_RUN.sub(_collapse_question_exclamation, text)


# ----------------------------------------------------------------------------------------------------------------
# Entry point
# ----------------------------------------------------------------------------------------------------------------


def normalize_tts_text(text: str) -> str:
    """Clean up user text for a TTS model without changing what is said.

    Applied by the Delay processor to the ``text`` of every user message (MOSS-TTS ``normalize_tts_text``). It does
    not verbalise numbers, dates or symbols; it removes Markdown and control characters, turns line breaks, dash runs
    and ellipses into ``。``, arrows into ``，``, collapses repeated punctuation and fixes spacing between CJK and
    Latin text. URLs, e-mail addresses, @mentions, ``u/…``/``r/…``, #hashtags, dot-tokens (``.env``), file and version
    tokens (``config.yaml``, ``v1.2.3``) and ``[...]``/``{...}`` tags (``[S1]``, ``[pause 3.2s]``) are
    kept verbatim. Idempotent.

    Args:
        text: the raw text.

    Returns:
        The normalised text (possibly empty).

    Example:
        >>> normalize_tts_text("  Hello   world!!  ")
        'Hello world！'
        >>> normalize_tts_text("Hello   world.\\nSecond line")
        'Hello world.。Second line'
    """
    if not isinstance(text, str):
        raise TypeError(f"normalize_tts_text expects a str, got {type(text).__name__}")
    text = _clean_characters(text)
    text = _strip_markdown(text)
    protected = _ProtectedSpans()
    text = protected.protect(text)
    text = _normalize_spaces(text)
    text = _normalize_structural_punctuation(text)
    text = _normalize_repeated_punctuation(text)
    text = _normalize_spaces(text)
    return protected.restore(text).strip()
