"""TTS bundles: convert a generator with tokenizer + codec, then AutoProcessor / AutoModel load a working pair."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import codectts  # noqa: F401  (registers the Auto classes)
import pytest
import torch
from codectts.conversion import convert_checkpoint
from codectts.conversion.moss.assemble import write_tts_bundle
from codectts.processing.moss.processor import CodecTTSProcessor
from safetensors.torch import load_file

GOLDEN = Path(__file__).parents[1] / "fixtures" / "golden"
TOKENIZER = GOLDEN / "tokenizer"
CODEC = GOLDEN / "audio_tokenizer" / "model"


@pytest.fixture(scope="module", params=["delay", "local"])
def bundle(request, tmp_path_factory):
    layout = request.param
    dst = tmp_path_factory.mktemp(f"bundle_{layout}") / "tts"
    convert_checkpoint(GOLDEN / f"moss_tts_{layout}" / "model", dst, tokenizer=TOKENIZER, audio_tokenizer=CODEC)
    return layout, dst


def test_auto_processor_and_model_load_the_bundle(bundle):
    from transformers import AutoModel, AutoProcessor

    layout, folder = bundle
    processor = AutoProcessor.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder)
    assert isinstance(processor, CodecTTSProcessor)
    assert processor.layout == layout and processor.audio_tokenizer is not None
    assert processor.n_vq == model.config.n_vq and processor.audio_pad_code == model.config.audio_pad_code
    assert processor.chat_template == (TOKENIZER / "chat_template.jinja").read_text()

    # prompts equal the reference processor's
    cases = json.loads((GOLDEN / "processor" / layout / "cases.json").read_text())
    tensors = load_file(GOLDEN / "processor" / layout / "cases.safetensors")
    ref1 = tensors["codes.ref1"]
    out = processor([processor.build_user_message(text="The quick brown fox jumps.", reference=[ref1])])
    assert torch.equal(out["input_ids"], tensors["clone_ref.input_ids"])
    assert cases["clone_ref"]["mode"] == "generation"

    # the codec works: encode a waveform reference, decode codes
    inputs = load_file(GOLDEN / "audio_tokenizer" / "inputs.safetensors")
    codes = processor.encode_audio([inputs["wav_long"]], n_vq=processor.n_vq)[0]
    assert torch.equal(codes, tensors["encode_audios_from_wav.0"])
    audio = processor.decode_audio_codes([codes])[0]
    reference = tensors["decode_audio_codes.single"]
    torch.testing.assert_close(audio, reference, atol=1e-5 * reference.abs().max(), rtol=0)


def test_processor_save_and_reload_round_trip(bundle, tmp_path):
    from transformers import AutoProcessor

    _, folder = bundle
    processor = AutoProcessor.from_pretrained(folder)
    shutil.copy(folder / "config.json", tmp_path / "config.json")  # AutoProcessor maps the model type
    processor.save_pretrained(tmp_path)
    assert (tmp_path / "audio_tokenizer" / "config.json").is_file()
    again = AutoProcessor.from_pretrained(tmp_path)
    assert again.to_dict() == processor.to_dict()
    message = again.build_user_message(text="Hello world.", tokens=25)
    assert torch.equal(again([message])["input_ids"], processor([message])["input_ids"])
    text_only = CodecTTSProcessor.from_pretrained(tmp_path, load_audio_tokenizer=False)
    assert text_only.audio_tokenizer is None
    with pytest.raises(ValueError, match="audio tokenizer"):
        text_only.decode_audio_codes([torch.zeros(2, processor.n_vq, dtype=torch.long)])


def test_bundle_with_an_already_converted_codec(tmp_path):
    from transformers import AutoProcessor

    codec_dir = tmp_path / "codec"
    convert_checkpoint(CODEC, codec_dir)
    dst = tmp_path / "tts"
    convert_checkpoint(GOLDEN / "moss_tts_delay" / "model", dst, tokenizer=TOKENIZER, audio_tokenizer=codec_dir)
    processor = AutoProcessor.from_pretrained(dst)
    assert processor.audio_tokenizer is not None
    assert (dst / "audio_tokenizer" / "model.safetensors").read_bytes() == (
        codec_dir / "model.safetensors"
    ).read_bytes()


def test_bundle_errors(tmp_path):
    generator = tmp_path / "gen"
    convert_checkpoint(GOLDEN / "moss_tts_delay" / "model", generator)
    with pytest.raises(FileNotFoundError, match="tokenizer"):
        write_tts_bundle(generator, tokenizer=None, audio_tokenizer=None)
    with pytest.raises(ValueError, match="not an audio tokenizer"):
        write_tts_bundle(generator, tokenizer=TOKENIZER, audio_tokenizer=GOLDEN / "moss_tts_local" / "model")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen3"}))
    with pytest.raises(ValueError, match="converted generator"):
        write_tts_bundle(tmp_path, tokenizer=TOKENIZER)
    # a codec whose codebook does not fit the generator is refused (and the failed conversion leaves nothing)
    bad_codec = tmp_path / "bad_codec"
    bad_codec.mkdir()
    config = json.loads((CODEC / "config.json").read_text())
    config["sampling_rate"] = 16000
    (bad_codec / "config.json").write_text(json.dumps(config))
    shutil.copy(CODEC / "model.safetensors", bad_codec / "model.safetensors")
    dst = tmp_path / "tts"
    with pytest.raises(ValueError, match="sampling rate"):
        convert_checkpoint(GOLDEN / "moss_tts_delay" / "model", dst, tokenizer=TOKENIZER, audio_tokenizer=bad_codec)
    assert not dst.exists()
