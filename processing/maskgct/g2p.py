"""MaskGCT's text front-end: text -> IPA phones (espeak-ng through ``phonemizer``) -> phone ids.

Reproduces the original (Amphion ``g2p_``) for the languages it handles through espeak: "en" (with its
Latin/other-script segmentation), "fr", "de", "ko". Chinese and Japanese need the original's extra models
(polyphone BERT, pyopenjtalk) and raise a clear error.

``phonemizer`` (and the system package ``espeak-ng``) is an optional dependency: ``pip install codectts[phonemizer]``.
"""

from __future__ import annotations

import re
from functools import cache, lru_cache

ESPEAK_VOICES = {"en": "en-us", "fr": "fr-fr", "de": "de", "ko": "ko"}
UNSUPPORTED = {"zh": "Chinese", "ja": "Japanese"}
_PUNCTUATION = ",.?!;:'…"


class PhonemizerNotAvailableError(ImportError):
    """phonemizer / espeak-ng are missing."""


@cache
def _backend(voice: str):
    try:
        from phonemizer.backend import EspeakBackend
    except ImportError as err:
        raise PhonemizerNotAvailableError(
            "MaskGCT's text front-end needs phonemizer and espeak-ng: `pip install codectts[phonemizer]` and "
            "`apt-get install espeak-ng` (or pass phone ids yourself)"
        ) from err
    try:
        return EspeakBackend(
            voice,
            punctuation_marks=_PUNCTUATION,
            preserve_punctuation=True,
            with_stress=False,
            tie=False,
            language_switch="remove-flags",
            words_mismatch="ignore",
        )
    except RuntimeError as err:
        raise PhonemizerNotAvailableError(f"espeak-ng is not usable for voice {voice!r}: {err}") from err


# ------------------------------------------------------------------------------------------------ English text


_ABBREVIATIONS = [
    (re.compile(rf"\b{abbr}\b", re.IGNORECASE), full)
    for abbr, full in [
        ("mrs", "misess"),
        ("mr", "mister"),
        ("dr", "doctor"),
        ("st", "saint"),
        ("co", "company"),
        ("jr", "junior"),
        ("maj", "major"),
        ("gen", "general"),
        ("drs", "doctors"),
        ("rev", "reverend"),
        ("lt", "lieutenant"),
        ("hon", "honorable"),
        ("sgt", "sergeant"),
        ("capt", "captain"),
        ("esq", "esquire"),
        ("ltd", "limited"),
        ("col", "colonel"),
        ("ft", "fort"),
        ("etc", "et cetera"),
        ("btw", "by the way"),
    ]
]

_comma_number_re = re.compile(r"([0-9][0-9,]+[0-9])")
_decimal_number_re = re.compile(r"([0-9]+\.[0-9]+)")
_fraction_re = re.compile(r"([0-9]+)/([0-9]+)")
_percent_re = re.compile(r"([0-9\.]*[0-9]+)%")
_pounds_re = re.compile(r"£([0-9,]*[0-9]+)")
_dollars_re = re.compile(r"\$([0-9\.,]*[0-9]+)")
_ordinal_re = re.compile(r"[0-9]+(st|nd|rd|th)")
_number_re = re.compile(r"[0-9]+")


@lru_cache(maxsize=1)
def _inflect():
    try:
        import inflect
    except ImportError as err:
        raise PhonemizerNotAvailableError(
            "English number normalisation needs `inflect` (codectts[phonemizer])"
        ) from err
    return inflect.engine()


def _expand_dollars(m: re.Match) -> str:
    match = m.group(1)
    parts = match.split(".")
    if len(parts) > 2:
        return match + " dollars"
    dollars = int(parts[0]) if parts[0] else 0
    cents = int(parts[1]) if len(parts) > 1 and parts[1] else 0
    if dollars and cents:
        return "{} {}, {} {}".format(
            dollars,
            "dollar" if dollars == 1 else "dollars",
            cents,
            "cent" if cents == 1 else "cents",
        )
    if dollars:
        return "{} {}".format(dollars, "dollar" if dollars == 1 else "dollars")
    if cents:
        return "{} {}".format(cents, "cent" if cents == 1 else "cents")
    return "zero dollars"


def _expand_fraction(m: re.Match) -> str:
    numerator, denominator = int(m.group(1)), int(m.group(2))
    if numerator == 1 and denominator == 2:
        return " one half "
    if numerator == 1 and denominator == 4:
        return " one quarter "
    words = _inflect().number_to_words(numerator)
    if denominator == 2:
        return f" {words} halves "
    if denominator == 4:
        return f" {words} quarters "
    return f" {words} {_inflect().ordinal(_inflect().number_to_words(denominator))} "


def _expand_number(m: re.Match) -> str:
    num = int(m.group(0))
    p = _inflect()
    if 1000 < num < 3000:
        if num == 2000:
            return "two thousand"
        if 2000 < num < 2010:
            return "two thousand " + p.number_to_words(num % 100)
        if num % 100 == 0:
            return p.number_to_words(num // 100) + " hundred"
        return p.number_to_words(num, andword="", zero="oh", group=2).replace(", ", " ")
    return p.number_to_words(num, andword="")


def normalize_numbers(text: str) -> str:
    text = _comma_number_re.sub(lambda m: m.group(1).replace(",", ""), text)
    text = _pounds_re.sub(r"\1 pounds", text)
    text = _dollars_re.sub(_expand_dollars, text)
    text = _fraction_re.sub(_expand_fraction, text)
    text = _percent_re.sub(r"\1 percent", text)
    text = _decimal_number_re.sub(lambda m: m.group(1).replace(".", " point "), text)
    text = _ordinal_re.sub(lambda m: _inflect().number_to_words(m.group(0)), text)
    return _number_re.sub(_expand_number, text)


def normalize_english(text: str) -> str:
    text = normalize_numbers(text)
    for regex, full in _ABBREVIATIONS:
        text = regex.sub(full, text)
    return re.sub(r"([,;.\?\!])([\w])", r"\1 \2", text)


# ------------------------------------------------------------------------------------------------ phonemisation

_CJK_PUNCTUATION = [
    ("，", ","),
    ("。", "."),
    ("！", "!"),
    ("？", "?"),
    ("；", ";"),
    ("：", ":"),
    ("、", ","),
    ("‘", "'"),
    ("’", "'"),
    ("⋯", "…"),
    ("···", "…"),
    ("・・・", "…"),
    ("...", "…"),
]

# (units, replacement): merged or substituted only where the unit sequence is bounded by "|", "_" or the ends
_SPECIAL_MAP = [
    ("t|ɹ", "tɹ"),
    ("d|ɹ", "dɹ"),
    ("t|s", "ts"),
    ("d|z", "dz"),
    ("ɪ|ɹ", "ɪɹ"),
    ("ɐ", "ɚ"),
    ("ᵻ", "ɪ"),
    ("əl", "l"),
    ("x", "k"),
    ("ɬ", "l"),
    ("ʔ", "t"),
    ("n̩", "n"),
    ("oː|ɹ", "oːɹ"),
]


def _special_map(phones: str) -> str:
    for units, replacement in _SPECIAL_MAP:
        pattern = re.compile(rf"(^|[_|]){re.escape(units)}([_|]|$)")
        while pattern.search(phones):
            phones = pattern.sub(lambda m, r=replacement: m.group(1) + r + m.group(2), phones)
    return phones


def espeak_phones(text: str, voice: str) -> str:
    """The original ``TextTokenizer``: clean the text, phonemise, punctuation as its own "|p|" unit."""
    from phonemizer.separator import Separator

    line = text.strip()
    for src, dst in _CJK_PUNCTUATION:
        line = line.replace(src, dst)
    line = re.sub(r"[^\w\s_,\.\?!;:\'…]", "", line)
    line = re.sub(r"\s*([,\.\?!;:\'…])\s*", r"\1", line)
    line = re.sub(r"\s+", " ", line)
    phones = _backend(voice).phonemize(
        [line], separator=Separator(word="|_|", syllable="-", phone="|"), strip=True, njobs=1
    )[0]
    phones = re.sub(r"([,\.\?!;:\'…])", r"|\1|", phones)
    phones = re.sub(r"\|+", "|", phones)
    return phones.rstrip("|")


def language_phones(text: str, language: str) -> str:
    """Phone string of one run of text in one language (the original's per-language cleaners)."""
    if language in UNSUPPORTED:
        raise NotImplementedError(
            f"MaskGCT's {UNSUPPORTED[language]} front-end ({language!r}) needs models that are not part of codectts; "
            "pass phone ids computed elsewhere"
        )
    if language not in ESPEAK_VOICES:
        raise ValueError(f"unknown language {language!r}: supported are {sorted(ESPEAK_VOICES)}")
    if language == "en":
        return _special_map(espeak_phones(normalize_english(text), ESPEAK_VOICES["en"]))
    # the English phone merges (t|ɹ -> tɹ, ɐ -> ɚ, ...) are not applied to other languages: their units (ɐ, x, ...)
    # have their own entries in the phone table
    return espeak_phones(text.replace("-", " "), ESPEAK_VOICES[language])


def _char_type(ch: str) -> str:
    if "\u4e00" <= ch <= "\u9fa5":
        return "zh"
    if "A" <= ch <= "Z" or "a" <= ch <= "z":
        return "en"
    return "other"


def segment_scripts(text: str) -> list[tuple[str, str]]:
    """Runs of Chinese / Latin letters; "other" characters join the current run (a leading run of others takes
    the language of the first letter that follows)."""
    segments: list[tuple[str, str]] = []
    current, lang = "", ""
    for ch in text:
        kind = _char_type(ch)
        if not current:
            current, lang = ch, kind
        elif lang == "other":
            current += ch
            lang = kind
        elif kind in (lang, "other"):
            current += ch
        else:
            segments.append((current, lang))
            current, lang = ch, kind
    if current:
        segments.append((current, lang))
    return segments


class MaskGctG2P:
    """Text -> (phone string, phone ids) with the MaskGCT phone table (``{"vocab": {phone: id}}``)."""

    def __init__(self, vocab: dict[str, int]):
        self.vocab = dict(vocab)

    def _ids(self, phones: str) -> list[int]:
        return [self.vocab[p] for p in phones.split("|") if p in self.vocab]

    def __call__(self, text: str, language: str = "en") -> tuple[str, list[int]]:
        if not isinstance(text, str) or not text.strip():
            raise ValueError("text must be a non-empty string")
        if not isinstance(language, str):
            raise ValueError(f"language must be a string such as 'en', got {language!r}")
        if language not in ("en", "zh"):
            phones = language_phones(text, language)
            return phones, self._ids(phones)
        all_phones, all_ids = "", []
        segments = segment_scripts(text)
        for index, (run, lang) in enumerate(segments):
            if lang == "other":
                raise ValueError(f"text {text!r} has no letters to pronounce (language {language!r})")
            phones = language_phones(run, lang)
            all_phones += phones + "|"
            all_ids += self._ids(phones)
            if lang == "en" and index == len(segments) - 1 and all_phones[-2] == "_":
                all_phones, all_ids = all_phones[:-2], all_ids[:-1]
        return all_phones, all_ids
