"""Model cards: valid Hub metadata, filled templates, a runnable usage snippet, presets and citations."""

from __future__ import annotations

import ast

import pytest
from huggingface_hub import ModelCard

from codectts.hub_cards import FAMILIES, extract_usage_snippet, render_model_card

CONFIGS = {
    "codec": {"architectures": ["CodecTTSAudioTokenizerModel"], "sampling_rate": 24000, "num_quantizers": 32},
    "delay": {
        "architectures": ["CodecTTSDelayForConditionalGeneration"],
        "n_vq": 32,
        "text_config": {"hidden_size": 64},
    },
    "local": {"architectures": ["CodecTTSLocalForConditionalGeneration"], "n_vq": 32, "local_num_layers": 4},
}
GENERATION = {
    "do_sample": True,
    "max_new_tokens": 4096,
    "audio_temperature": 1.7,
    "audio_top_p": 0.8,
    "eos_token_id": 7,
}


def render(family, **kwargs):
    defaults = dict(repo_id="someone/tiny-" + family, config=CONFIGS[family])
    if family != "codec":
        defaults.update(generation_config=GENERATION, has_processor=True, codec_location="audio_tokenizer")
    return render_model_card(family, **{**defaults, **kwargs})


@pytest.mark.parametrize("family", FAMILIES)
def test_cards_have_valid_hub_metadata(family):
    card = render(family, base_model="OpenMOSS-Team/Original", tags=["extra-tag"])
    data = ModelCard(card).data.to_dict()
    assert data["library_name"] == "transformers"
    assert data["pipeline_tag"] == ("feature-extraction" if family == "codec" else "text-to-speech")
    assert data["license"] == "apache-2.0"
    assert data["base_model"] == "OpenMOSS-Team/Original"
    assert {"codectts", "custom_code", "extra-tag"} <= set(data["tags"])
    assert len(data["tags"]) == len(set(data["tags"]))
    if family == "codec":
        assert "language" not in data
    else:
        assert data["language"] == ["zh", "en"]
    assert "base_model" not in ModelCard(render(family)).data.to_dict()
    assert ModelCard(render(family, languages=["fr"], license="mit")).data.to_dict()["language"] == ["fr"]


@pytest.mark.parametrize("family", FAMILIES)
def test_cards_are_filled_and_carry_snippet_presets_and_citation(family):
    card = render(family)
    assert "${" not in card and "$$" not in card
    for section in ("## Usage", "## Model details", "## Limitations", "## Citation"):
        assert section in card, section
    assert "arxiv.org/abs/2602.10934" in card and "arxiv.org/abs/2603.18090" in card  # MOSS-Audio-Tokenizer, MOSS-TTS
    snippet = extract_usage_snippet(card)
    ast.parse(snippet)
    assert '"someone/tiny-' + family + '", trust_remote_code=True' in snippet
    assert f"`{CONFIGS[family]['architectures'][0]}`" in card
    if family != "codec":
        assert "## Sampling presets" in card and "AutoProcessor" in snippet
        assert "| `audio_temperature` | `1.7` |" in card and "| `do_sample` | `True` |" in card
        assert "eos_token_id" not in card  # only sampling settings are listed
        assert "in `audio_tokenizer/`" in card


def test_codec_in_its_own_repo_is_linked():
    card = render("delay", codec_location="someone/tiny-codec")
    assert "[someone/tiny-codec](https://huggingface.co/someone/tiny-codec)" in card
    snippet = extract_usage_snippet(card)
    ast.parse(snippet)
    assert 'codec = AutoModel.from_pretrained("someone/tiny-codec", trust_remote_code=True)' in snippet
    assert (
        'AutoProcessor.from_pretrained("someone/tiny-delay", audio_tokenizer=codec, trust_remote_code=True)' in snippet
    )
    assert "audio_tokenizer=codec" not in extract_usage_snippet(render("delay"))


def test_bad_card_requests_are_refused():
    with pytest.raises(ValueError, match="unknown model family"):
        render_model_card("vits", repo_id="x/y", config={})
    with pytest.raises(ValueError, match="needs the processor"):
        render("delay", has_processor=False)
    with pytest.raises(ValueError, match="needs the codec"):
        render("local", codec_location=None)
    with pytest.raises(ValueError, match="no '## Usage' section"):
        extract_usage_snippet("# title\n")
    with pytest.raises(ValueError, match="no ```python block"):
        extract_usage_snippet("## Usage\n\ntext\n\n## Next\n```python\nx = 1\n```\n")
