"""The shared part of the Delay and Local configurations (configuration/common.py), checked on both families."""

from __future__ import annotations

import pytest
from codectts.configuration.moss.delay import CodecTTSDelayConfig
from codectts.configuration.moss.local import CodecTTSLocalConfig
from transformers import AutoConfig, Qwen3Config

import codectts  # noqa: F401  (registers the Auto classes)

TINY_TEXT = dict(
    vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
    num_key_value_heads=1, head_dim=8,
)  # fmt: skip
FAMILIES = [CodecTTSDelayConfig, CodecTTSLocalConfig]


@pytest.mark.parametrize("config_class", FAMILIES)
def test_pad_code_defaults_to_audio_vocab_size(config_class):
    config = config_class(text_config=TINY_TEXT, n_vq=3, audio_vocab_size=40)
    assert config.audio_pad_code == 40 and config.audio_num_embeddings == 41 and config.num_channels == 4


@pytest.mark.parametrize("config_class", FAMILIES)
def test_language_config_alias_and_sizes(config_class):
    config = config_class(language_config=dict(TINY_TEXT, model_type="qwen3"), n_vq=2, audio_vocab_size=8)
    assert isinstance(config.text_config, Qwen3Config) and config.language_config is config.text_config
    assert (config.hidden_size, config.vocab_size) == (16, 64)


@pytest.mark.parametrize("config_class", FAMILIES)
@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(n_vq=0), ValueError, "n_vq must be >= 1"),
        (dict(audio_vocab_size=0, audio_pad_code=0), ValueError, "audio_vocab_size must be >= 1"),
        (dict(audio_pad_code=99), ValueError, "audio_pad_code"),
        (dict(text_config=[1, 2]), TypeError, "text_config must be a Qwen3Config or a dict"),
    ],
)
def test_bad_shared_fields(config_class, kwargs, error, message):
    with pytest.raises(error, match=message):
        config_class(**{"text_config": TINY_TEXT, "n_vq": 2, "audio_vocab_size": 8, **kwargs})


@pytest.mark.parametrize("config_class", FAMILIES)
def test_pad_code_must_be_the_last_row(config_class):
    # the pad is the extra last row of every audio embedding/head; its logit is the one masked in the checkpoints
    with pytest.raises(ValueError, match="must equal audio_vocab_size"):
        config_class(text_config=TINY_TEXT, audio_vocab_size=8, audio_pad_code=3)


@pytest.mark.parametrize("config_class", FAMILIES)
def test_save_load_round_trip(config_class, tmp_path):
    config = config_class(
        text_config=TINY_TEXT, n_vq=3, audio_vocab_size=40, pad_token_id=0, im_end_token_id=5, sampling_rate=16000,
        frame_rate=25.0,
    )  # fmt: skip
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert type(loaded) is config_class and isinstance(loaded.text_config, Qwen3Config)
    saved, reloaded = config.to_dict(), loaded.to_dict()
    saved.pop("_name_or_path"), reloaded.pop("_name_or_path")
    assert reloaded == saved
    assert (loaded.pad_token_id, loaded.im_end_token_id, loaded.audio_pad_code) == (0, 5, 40)
    assert (loaded.sampling_rate, loaded.frame_rate, loaded.text_config.hidden_size) == (16000, 25.0, 16)


@pytest.mark.parametrize("config_class", FAMILIES)
def test_from_original_config_reads_the_shared_fields(config_class):
    original = {
        "model_type": "moss_tts_delay",
        "language_config": dict(TINY_TEXT, model_type="qwen3", transformers_version="4.57.1"),
        "n_vq": 3,
        "audio_vocab_size": 40,
        "pad_token_id": 0,
        "audio_end_token_id": 7,
        "audio_start_token_id": None,  # null in the original: keep the default
        "sampling_rate": 16000,
        "torch_dtype": "bfloat16",
    }
    if config_class is CodecTTSLocalConfig:
        original.update(local_num_layers=1, local_hidden_size=8, local_ffn_hidden_size=16)
    config = config_class.from_original_config(original, frame_rate=25.0)
    assert (config.n_vq, config.audio_vocab_size, config.audio_pad_code) == (3, 40, 40)
    assert (config.pad_token_id, config.audio_end_token_id, config.audio_start_token_id) == (0, 7, 151652)
    assert (config.sampling_rate, config.frame_rate, config.text_config.hidden_size) == (16000, 25.0, 16)
    assert str(config.dtype).removeprefix("torch.") == "bfloat16"
