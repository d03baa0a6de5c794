"""Tests of ``normalize_tts_text`` (spec §6.7): golden parity with the original, idempotence, and each rule."""

import json
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codectts.processing.moss.text_normalization import normalize_tts_text

GOLDEN_DIR = Path(__file__).parents[1] / "fixtures" / "golden" / "processor"
GOLDEN_PAIRS = json.loads((GOLDEN_DIR / "normalize_tts_text.json").read_text(encoding="utf-8"))


def _texts_of_delay_processor_golden():
    """The ``- Text:`` field of every user message the original Delay processor built (already normalised)."""
    cases = json.loads((GOLDEN_DIR / "delay" / "cases.json").read_text(encoding="utf-8"))
    texts = []

    def walk(node):
        if isinstance(node, dict):
            if node.get("role") == "user" and isinstance(node.get("content"), str):
                match = re.search(r"\n- Text:\n(.*)\n</user_inst>", node["content"], re.DOTALL)
                assert match is not None, node["content"]
                texts.append(match.group(1))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(cases)
    return sorted(set(texts))


DELAY_PROCESSOR_TEXTS = _texts_of_delay_processor_golden()


# ----------------------------------------------------------------------------------------------------------------
# Golden parity
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pair", GOLDEN_PAIRS, ids=[repr(pair["input"])[:40] for pair in GOLDEN_PAIRS])
def test_golden_pairs(pair):
    assert normalize_tts_text(pair["input"]) == pair["output"]


def test_delay_processor_golden_texts_are_normalised():
    # The README of the processor golden lists the raw inputs; the recorded user messages carry the original's
    # output, which must therefore be a fixed point of ours.
    assert len(DELAY_PROCESSOR_TEXTS) >= 5
    assert "[S1]Hi there.[S2]Hello!" in DELAY_PROCESSOR_TEXTS
    assert "Hello world, this is a tiny test." in DELAY_PROCESSOR_TEXTS
    for text in DELAY_PROCESSOR_TEXTS:
        assert normalize_tts_text(text) == text


def test_observed_example_of_the_spec():
    assert normalize_tts_text("Hello   world.\nSecond line") == "Hello world.。Second line"


# ----------------------------------------------------------------------------------------------------------------
# Idempotence
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [pair["input"] for pair in GOLDEN_PAIRS] + DELAY_PROCESSOR_TEXTS)
def test_idempotent_on_golden_inputs(text):
    once = normalize_tts_text(text)
    assert normalize_tts_text(once) == once


# Pieces that exercise every rule and their interactions: scripts, spacing, every punctuation mark the rules look
# at, Markdown line markers, protected tokens, control characters and line breaks.
_PIECES = list("aZé3 \t\n.,!?;:。，！？；：、-—–=><→⇒【】「」『』〖〗《》[](){}#@/_…⋯'“”中文かカ한") + [
    "...", "……", "——", "--", "->", "=>", "<-", "  ", "\r\n", "\r", "\u3000", "\u200b", "\x00", "\u2028",
    "https://x.com/a_(b)", "www.a.b", "a@b.co", "@me", "#tag", "u/x", "r/y", ".env", "v1.2", "3.50", "a.txt",
    "[S1]", "[pause 3.2s]", "{x}", "[a](b)", "](", "- ", "* ", "+ ", "# ", "## ", "> ", "1. ", "2) ",
]  # fmt: skip
_pieces_text = st.lists(st.sampled_from(_PIECES), max_size=24).map("".join)
_FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))


@_FUZZ
@given(_pieces_text)
def test_idempotent_on_generated_pieces(text):
    once = normalize_tts_text(text)
    assert normalize_tts_text(once) == once


@_FUZZ
@given(st.text(max_size=60))
def test_idempotent_on_arbitrary_unicode(text):
    once = normalize_tts_text(text)
    assert normalize_tts_text(once) == once


# The same without what may be protected (URLs, hashtags, [...]/{...} tags; with ASCII letters or digits, file-like
# and dot tokens such as "a--a" or "...3"), whose interior legitimately keeps "--", "..." etc.
_unprotected_text = st.lists(
    st.sampled_from(
        [piece for piece in _PIECES if not any(c in piece for c in "[]{}/#") and not re.search("[A-Za-z0-9]", piece)]
    ),
    max_size=24,
).map("".join)


@_FUZZ
@given(_unprotected_text)
def test_output_invariants(text):
    out = normalize_tts_text(text)
    assert out == out.strip()
    assert "\n" not in out and "\r" not in out and "\t" not in out and "  " not in out
    assert not any("\ue000" <= ch <= "\uf8ff" or ch >= "\U000f0000" for ch in out)  # no placeholder leaks
    for run in ("。。", "，，", "！！", "？？", "!!", "??", "...", "……", "--", "->", "=>", "→"):
        assert run not in out


# ----------------------------------------------------------------------------------------------------------------
# Rules (spec §6.7, in order)
# ----------------------------------------------------------------------------------------------------------------

RULE_CASES = {
    "1. characters": [
        ("a\r\nb\rc", "a。b。c"),  # CRLF / CR are line breaks
        ("中文\u3000English", "中文 English"),  # ideographic space is a space
        ("zero\u200bwidth\ufeff\u200d", "zerowidth"),  # zero-width characters dropped
        ("bell\x07 and\x00 nul\x7f", "bell and nul"),  # control characters dropped
        ("private\ue000use", "privateuse"),  # other C* (private use) dropped too
        ("tab\tkept", "tab kept"),  # tabs survive step 1 and become spaces in the space pass
    ],
    "2. markdown": [
        ("see [the docs](https://example.com/a_(b)) now", "see the docs https://example.com/a_(b) now"),
        ("# Title\n## Sub", "Title。Sub"),
        ("> quoted\n> > nested", "quoted。nested"),
        ("- one\n* two\n+ three", "one。two。three"),
        ("1. first\n2) second\n10. tenth", "first。second。tenth"),
        ("> - quoted bullet", "quoted bullet"),
        ("a\n\n  \n\nb", "a。b"),  # empty lines dropped
        ("#hashtag\n-5 degrees\n*bold*\n3.5 apples", "#hashtag。-5 degrees。*bold*。3.5 apples"),  # no markers
    ],
    "3. protection": [
        ("see https://x.com/a--b...c?!x=>y now", "see https://x.com/a--b...c?!x=>y now"),
        ("visit https://example.com.", "visit https://example.com."),  # trailing full stop is not the URL's
        ("mail a.b-c@mail.example.org!!", "mail a.b-c@mail.example.org！"),
        ("ping @user_name!!", "ping @user_name！"),
        ("r/python and u/spez", "r/python and u/spez"),
        ("看 #话题 以及", "看 #话题 以及"),  # the space ending a hashtag survives before CJK
        ("copy .env and .tar.gz", "copy .env and .tar.gz"),  # no "no space before '.'" inside a dot-token
        ("v1.2.3 → v2.0-rc1", "v1.2.3，v2.0-rc1"),
        ("open src/main.py...", "open src/main.py。"),
        ("[pause 3.2s] and {laugh...}", "[pause 3.2s] and {laugh...}"),  # tags are verbatim
    ],
    "4. spaces": [
        ("a  \t b", "a b"),
        ("你 好 世 界", "你好世界"),
        ("ひら がな カタ カナ", "ひらがなカタカナ"),
        ("共 3 个", "共3个"),
        ("用Python写代码", "用 Python 写代码"),
        ("版本 1.2 发布", "版本1.2发布"),  # a digit-edged protected token spaces like a digit
        # a URL runs until whitespace or CJK sentence punctuation, as in the original (CJK after it is part of it)
        ("访问https://x.com获取", "访问 https://x.com获取"),
        ("访问 https://x.com 获取", "访问 https://x.com 获取"),
        ("访问https://x.com，获取", "访问 https://x.com，获取"),
        # every protected span spaces like a word next to CJK, whatever its edge characters (the original protects
        # it with a word-like placeholder before its spacing rules run)
        ("版本v1.2.3发布", "版本 v1.2.3 发布"),
        ("版本 v1.2.3 发布", "版本 v1.2.3 发布"),
        ("以及#话题", "以及 #话题"),
        ("联系a.b@mail.com或者@user吧", "联系 a.b@mail.com 或者 @user 吧"),
        ("打开.env文件和u/name说", "打开 .env 文件和 u/name 说"),
        ("见https://x.com/a_1。", "见 https://x.com/a_1。"),
        ("价格3.50元", "价格3.50元"),  # a number is not protected: it spaces like digits
        ("打印3D模型", "打印 3D 模型"),  # a token with a letter is Latin-ish even when it starts with a digit
        ("café中文", "café中文"),  # only ASCII tokens count as Latin-ish
        ("[S1]你好[S2]再见", "[S1]你好[S2]再见"),  # tags keep their spacing
        ("你好 ， 世界 。 （ 注 ）", "你好，世界。（注）"),
        ("Hello , world ; yes . no ! ok ?", "Hello, world; yes. no! ok?"),
        ("안녕 하세요", "안녕 하세요"),  # Hangul is written with spaces
        ("“Quoted” — dash … ellipsis", "“Quoted” — dash … ellipsis"),  # general punctuation is not CJK
    ],
    "5. structural punctuation": [
        ("【注意】请勿吸烟", "注意。请勿吸烟"),
        ("〖目录〗『序言』", "目录。序言。"),
        ("第一句。「标题」正文", "第一句。标题。正文"),
        ("他说「你好」然后走了", "他说「你好」然后走了"),  # not at a sentence start
        ("「一」「二」「三」", "一。二。三。"),  # each one starts a sentence once the previous is unwrapped
        ("「『嵌套』」正文", "嵌套。正文"),
        ("【标题】\n正文", "标题。正文"),
        ("《红楼梦》", "红楼梦"),
        ("书单：《红楼梦》，《西游记》。", "书单：《红楼梦》，西游记。"),
        ("我喜欢《红楼梦》这本书", "我喜欢《红楼梦》这本书"),
        ("A -> B => C → D ⇒ E <-> F", "A，B，C，D，E，F"),
        ("等等——然后 -- 再 --- 说", "等等。然后。再。说"),
        ("a — b", "a — b"),  # a single dash is not a run
    ],
    "6. repeated punctuation": [
        ("wait... ok", "wait。ok"),
        ("好……吧", "好。吧"),
        ("single … stays, two.. too", "single … stays, two.. too"),
        ("你好。。。", "你好。"),
        ("好，，吧,,", "好，吧，"),
        ("Hi!! 好！！", "Hi！好！"),
        ("真的？？", "真的？"),
        ("What?! 什么？！？！ Really!?", "What？！什么？！Really？！"),
        ("Hello! Bye?", "Hello! Bye?"),  # single ASCII marks stay ASCII
    ],
    "7. final pass": [
        ("  padded  ", "padded"),
        ("", ""),
        ("\n\n \t", ""),
        ("x -- y", "x。y"),  # spaces left around the new 。 are removed by the second space pass
        ("[S1]你好。[S2]再见[pause 1.5s]好的", "[S1]你好。[S2]再见[pause 1.5s]好的"),
    ],
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [case for cases in RULE_CASES.values() for case in cases],
    ids=[f"{group}:{text!r}"[:60] for group, cases in RULE_CASES.items() for text, _ in cases],
)
def test_rule(text, expected):
    assert normalize_tts_text(text) == expected
    assert normalize_tts_text(expected) == expected


# ----------------------------------------------------------------------------------------------------------------
# Held-out style inputs: realistic mixtures, checked for the properties that matter to the model
# ----------------------------------------------------------------------------------------------------------------

HELD_OUT_STYLE = [
    "# 产品介绍\n\n我们的新模型MOSS-TTS支持中英混合，比如 “Hello, world” 。\n- 低延迟\n- 高音质！！\n\n详情见 https://github.com/OpenMOSS/MOSS-TTS 。",
    "[S1]今天天气怎么样？[pause 0.5s][S2]还不错……我们去公园吧!!\n[S1]好啊 -> 现在就走",
    "> Note: run `pip install codectts==0.1.0` first...\n1. Download the model\n2. Read config.json\n3. Enjoy!?",
    "東京は晴れです。Let's go to 渋谷 at 3 pm!",
    "Contact me at jane.doe@example.com or @jane_doe — see [my site](https://jane.example.org/about).",
]


@pytest.mark.parametrize("text", HELD_OUT_STYLE)
def test_held_out_style_inputs(text):
    out = normalize_tts_text(text)
    assert normalize_tts_text(out) == out
    assert "\n" not in out and "  " not in out
    assert not re.search(r"(^|。)\s*(#|>|- |\d+\. )", out)  # no Markdown line markers left
    for token in re.findall(r"https?://[^\s)]+[A-Za-z0-9/]|\[(?:S\d|pause [\d.]+s)\]|\S+@\S+\.[a-z]+", text):
        assert token in out  # URLs, e-mails, speaker and pause tags survive verbatim


def test_held_out_style_examples():
    assert normalize_tts_text(HELD_OUT_STYLE[1]) == "[S1]今天天气怎么样？[pause 0.5s][S2]还不错。我们去公园吧！。[S1]好啊，现在就走"
    assert normalize_tts_text(HELD_OUT_STYLE[3]) == "東京は晴れです。Let's go to 渋谷 at 3 pm!"


# ----------------------------------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [None, b"bytes", 3, ["list"]])
def test_rejects_non_strings(bad):
    with pytest.raises(TypeError, match="expects a str"):
        normalize_tts_text(bad)
