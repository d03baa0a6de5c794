"""Audio tokenizer: bad input raises specific errors, converter errors, bf16, config round trips, Auto classes."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, AutoModel

import codectts  # noqa: F401  (registers the Auto classes)
from codectts.configuration.moss.audio_tokenizer import CodecTTSAudioTokenizerConfig
from codectts.conversion import convert_checkpoint
from codectts.conversion.moss.audio_tokenizer import load_original_audio_tokenizer, original_tensor_shapes
from codectts.conversion.io import CheckpointMismatchError
from codectts.modeling.moss.audio_tokenizer import CodecTTSAudioTokenizerModel

GOLDEN_MODEL = Path(__file__).parents[1] / "fixtures" / "golden" / "audio_tokenizer" / "model"
HOP = 1920


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return CodecTTSAudioTokenizerModel(CodecTTSAudioTokenizerConfig.tiny()).eval()


@pytest.fixture(scope="module")
def codes(model):
    return torch.randint(0, model.config.codebook_size, (2, 8, 5), generator=torch.Generator().manual_seed(0))


# ---------------------------------------------------------------- encode
@pytest.mark.parametrize(
    "audio,error,match",
    [
        (torch.zeros(HOP), ValueError, "shape"),
        (torch.zeros(1, 1, 1, HOP), ValueError, "shape"),
        (torch.zeros(1, 2, HOP), ValueError, "mono"),
        (torch.zeros(1, 1, 0), ValueError, "empty"),
        (torch.zeros(0, HOP), ValueError, "empty"),
        (torch.zeros(1, HOP, dtype=torch.int16), TypeError, "floating point"),
        ([0.0] * HOP, TypeError, "torch.Tensor"),
    ],
)
def test_encode_rejects_bad_audio(model, audio, error, match):
    with pytest.raises(error, match=match):
        model.encode(audio)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_encode_rejects_non_finite_samples(model, bad):
    audio = torch.zeros(2, 1, HOP)
    audio[1, 0, 7] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        model.encode(audio)


def test_non_finite_samples_in_the_padding_are_ignored(model):
    audio = torch.zeros(1, 1, 2 * HOP)
    audio[..., HOP:] = float("nan")
    mask = torch.zeros(1, 2 * HOP, dtype=torch.long)
    mask[:, :HOP] = 1
    with torch.no_grad():
        padded = model.encode(audio, padding_mask=mask)
        clean = model.encode(torch.zeros(1, 1, HOP))
    assert padded.audio_codes_lengths.tolist() == [1]
    assert torch.equal(padded.audio_codes[..., :1], clean.audio_codes)


@pytest.mark.parametrize(
    "mask,match",
    [
        (torch.ones(2, 100), "shape"),
        (torch.tensor([[1] * 50 + [0] * 50 + [1] * 100, [1] * 200]), "right padding"),
        (torch.tensor([[0] * 200, [1] * 200]), "no audio"),
    ],
)
def test_encode_rejects_bad_padding_mask(model, mask, match):
    with pytest.raises(ValueError, match=match):
        model.encode(torch.zeros(2, 1, 200), padding_mask=mask)


def test_encode_checks_sampling_rate(model):
    with pytest.raises(ValueError, match="16000 Hz.*24000 Hz"):
        model.encode(torch.zeros(1, 1, HOP), sampling_rate=16000)
    assert model.encode(torch.zeros(1, 1, HOP), sampling_rate=24000).audio_codes.shape == (1, 32, 1)


@pytest.mark.parametrize("nq,error", [(0, ValueError), (33, ValueError), (-1, ValueError), (8.0, TypeError)])
def test_encode_rejects_bad_num_quantizers(model, nq, error):
    with pytest.raises(error, match="num_quantizers"):
        model.encode(torch.zeros(1, 1, HOP), num_quantizers=nq)


def test_encode_lengths_and_shapes(model):
    audio = torch.randn(3, 5 * HOP + 1, generator=torch.Generator().manual_seed(1))
    mask = torch.ones(3, audio.shape[-1], dtype=torch.bool)
    mask[1, HOP:] = False
    mask[2, 2 * HOP + 5 :] = False
    with torch.no_grad():
        out = model.encode(audio, padding_mask=mask, num_quantizers=5)
    assert out.audio_codes.shape == (3, 5, 6) and out.audio_codes.dtype == torch.int64
    assert out.audio_codes_lengths.tolist() == [6, 1, 3]
    assert out.encoder_hidden_states.shape == (3, 6, model.config.quantizer_input_size)
    assert ((out.audio_codes >= 0) & (out.audio_codes < model.config.codebook_size)).all()
    codes, lengths = model.encode(audio, padding_mask=mask, num_quantizers=5, return_dict=False)
    assert torch.equal(codes, out.audio_codes) and torch.equal(lengths, out.audio_codes_lengths)


# ---------------------------------------------------------------- decode
def test_decode_rejects_bad_codes(model, codes):
    with pytest.raises(TypeError, match="integer"):
        model.decode(codes.float())
    with pytest.raises(ValueError, match="shape"):
        model.decode(codes[None])
    with pytest.raises(ValueError, match="empty"):
        model.decode(codes[..., :0])
    with pytest.raises(ValueError, match=r"33 quantizer rows.*has 32"):
        model.decode(torch.zeros(1, 33, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"num_quantizers=16 but audio_codes only has 8"):
        model.decode(codes, num_quantizers=16)
    for bad in (-1, model.config.codebook_size):
        broken = codes.clone()
        broken[1, 3, 2] = bad
        with pytest.raises(ValueError, match=rf"\[0, 64\); found {bad} at \(batch 1, quantizer 3, frame 2\)"):
            model.decode(broken)


def test_decode_rejects_bad_lengths(model, codes):
    with pytest.raises(ValueError, match="shape"):
        model.decode(codes, audio_codes_lengths=torch.tensor([5]))
    with pytest.raises(ValueError, match="between 0 and 5"):
        model.decode(codes, audio_codes_lengths=torch.tensor([6, 1]))
    with pytest.raises(TypeError, match="integer"):
        model.decode(codes, audio_codes_lengths=torch.tensor([5.0, 1.0]))


def test_decode_any_prefix_of_quantizers(model, codes):
    with torch.no_grad():
        for k in (1, 3, 8):
            out = model.decode(codes[:, :k])
            assert out.audio_values.shape == (2, 1, 5 * HOP) and out.audio_values.dtype == torch.float32
            assert torch.equal(out.audio_values, model.decode(codes, num_quantizers=k).audio_values)
            assert out.audio_values_lengths.tolist() == [5 * HOP, 5 * HOP]


def test_forward_requires_exactly_one_input(model, codes):
    with pytest.raises(ValueError, match="exactly one"):
        model()
    with pytest.raises(ValueError, match="exactly one"):
        model(input_values=torch.zeros(1, 1, HOP), audio_codes=codes)
    with torch.no_grad():
        out = model(audio_codes=codes, audio_codes_lengths=torch.tensor([5, 2]))
    assert out.audio_values_lengths.tolist() == [5 * HOP, 2 * HOP]


# ---------------------------------------------------------------- streaming misuse
def test_streaming_misuse_errors(model, codes):
    enc_state = model.init_streaming_state("encoder", batch_size=2)
    with pytest.raises(ValueError, match="encoder state"):
        model.decode(codes, past_key_values=enc_state)
    with pytest.raises(ValueError, match="batch size 2, got 1"):
        model.encode(torch.zeros(1, 1, HOP), past_key_values=enc_state)
    with pytest.raises(ValueError, match="padding_mask"):
        model.encode(torch.zeros(2, 1, HOP), padding_mask=torch.ones(2, HOP), past_key_values=enc_state)
    with pytest.raises(TypeError, match="CodecStreamingState"):
        model.encode(torch.zeros(2, 1, HOP), past_key_values=((None, None),))
    with torch.no_grad():
        model.encode(torch.zeros(2, 1, HOP + 10), past_key_values=enc_state)  # partial frame ends the stream
    assert enc_state.finished
    with pytest.raises(ValueError, match="partial frame"):
        model.encode(torch.zeros(2, 1, HOP), past_key_values=enc_state)
    with pytest.raises(ValueError, match="'encoder' or 'decoder'"):
        model.init_streaming_state("both", 1)


# ---------------------------------------------------------------- dtypes, save/load, auto classes
def test_bfloat16_transformers_with_float32_quantizer(model, tmp_path):
    model.save_pretrained(tmp_path)
    bf16 = AutoModel.from_pretrained(tmp_path, dtype=torch.bfloat16).eval()
    assert bf16.encoder.stages[1].layers[0].mlp.fc1.weight.dtype == torch.bfloat16
    assert bf16.decoder.stages[0].layers[0].self_attn.qkv_proj.weight.dtype == torch.bfloat16
    assert all(p.dtype == torch.float32 for p in bf16.quantizer.parameters())
    audio = torch.randn(2, 1, 3 * HOP + 11, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        enc = bf16.encode(audio)
        dec = bf16.decode(enc.audio_codes)
        reference = model.decode(enc.audio_codes).audio_values
    assert enc.audio_codes.shape == (2, 32, 4) and enc.encoder_hidden_states.dtype == torch.bfloat16
    assert dec.audio_values.dtype == torch.float32 and torch.isfinite(dec.audio_values).all()
    # Same codes through bf16 transformers: close to the float32 decode (bf16 has ~3 significant digits).
    rel = (dec.audio_values - reference).norm() / reference.norm()
    assert rel < 0.05, rel


def test_save_load_and_auto_classes(model, tmp_path):
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == "codectts_audio_tokenizer"
    assert type(AutoConfig.from_pretrained(tmp_path)).__name__ == "CodecTTSAudioTokenizerConfig"
    reloaded = AutoModel.from_pretrained(tmp_path).eval()
    audio = torch.randn(1, 1, 2 * HOP, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        a, b = model(input_values=audio), reloaded(input_values=audio)
    assert torch.equal(a.audio_codes, b.audio_codes) and torch.equal(a.audio_values, b.audio_values)


def test_config_validation_and_defaults():
    released = CodecTTSAudioTokenizerConfig()
    assert released.frame_rate == 12.5 and released.num_quantizers == 32 and released.codebook_size == 1024
    assert released.stage_windows("decoder") == [125, None, 250, None, 500, None, 1000, None]
    stages = [dict(s) for s in released.encoder_stages]
    stages[0]["patch_size"] = 120
    with pytest.raises(ValueError, match="input channels"):
        CodecTTSAudioTokenizerConfig(encoder_stages=stages)
    with pytest.raises(ValueError, match="downsample_rate"):
        CodecTTSAudioTokenizerConfig(downsample_rate=960)
    with pytest.raises(ValueError, match="unknown stage type"):
        CodecTTSAudioTokenizerConfig(encoder_stages=[{"type": "conv"}])


# ---------------------------------------------------------------- converter
def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _original_copy(tmp_path: Path, state: dict | None = None, config: dict | None = None) -> Path:
    src = tmp_path / "original"
    src.mkdir()
    shutil.copy(GOLDEN_MODEL / "config.json", src / "config.json")
    if config is not None:
        (src / "config.json").write_text(json.dumps(config))
    if state is None:
        shutil.copy(GOLDEN_MODEL / "model.safetensors", src / "model.safetensors")
    else:
        save_file(state, src / "model.safetensors")
    return src


@pytest.mark.parametrize(
    "edit,match",
    [
        (
            lambda s: s.pop("encoder.1.transformer.layers.0.norm1.bias"),
            r"missing tensors \(1\): encoder\.1\.transformer",
        ),
        (lambda s: s.__setitem__("encoder.9.extra", torch.zeros(1)), r"unexpected tensors \(1\): encoder\.9\.extra"),
        (
            lambda s: s.__setitem__("quantizer.quantizers.3.codebook.weight", torch.zeros(32, 8)),
            r"wrong shape \(1\): quantizer\.quantizers\.3\.codebook\.weight: expected \(64, 8\), found \(32, 8\)",
        ),
    ],
)
def test_converter_names_bad_tensors_and_leaves_source_alone(tmp_path, edit, match):
    state = load_file(GOLDEN_MODEL / "model.safetensors")
    edit(state)
    src = _original_copy(tmp_path, state)
    before = _digest(src)
    with pytest.raises(CheckpointMismatchError, match=match):
        convert_checkpoint(src, tmp_path / "out")
    assert _digest(src) == before
    assert not (tmp_path / "out").exists()


def test_converter_rejects_unsupported_original_options(tmp_path):
    config = json.loads((GOLDEN_MODEL / "config.json").read_text())
    config["encoder_kwargs"][1]["norm"] = "rms_norm"
    with pytest.raises(ValueError, match=r"encoder_kwargs\[1\]: norm='rms_norm' is not supported"):
        convert_checkpoint(_original_copy(tmp_path, config=config), tmp_path / "out")
    config = json.loads((GOLDEN_MODEL / "config.json").read_text())
    config["quantizer_kwargs"]["quantizer_type"] = "rvq"
    with pytest.raises(ValueError, match="quantizer_type 'rvq'"):
        CodecTTSAudioTokenizerConfig.from_original_config(config)


def test_converter_reads_sharded_and_legacy_weight_norm_names(tmp_path):
    state = load_file(GOLDEN_MODEL / "model.safetensors")
    legacy = {
        k.replace("parametrizations.weight.original0", "weight_g").replace(
            "parametrizations.weight.original1", "weight_v"
        ): v
        for k, v in state.items()
    }
    src = tmp_path / "sharded"
    src.mkdir()
    shutil.copy(GOLDEN_MODEL / "config.json", src / "config.json")
    names = sorted(legacy)
    shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    for file, keys in shards.items():
        save_file({k: legacy[k] for k in keys}, src / file)
    weight_map = {k: file for file, keys in shards.items() for k in keys}
    (src / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    from_legacy = load_original_audio_tokenizer(src)
    reference = load_original_audio_tokenizer(GOLDEN_MODEL)
    for (name, a), (_, b) in zip(from_legacy.state_dict().items(), reference.state_dict().items()):
        assert torch.equal(a, b), name
    assert len(original_tensor_shapes(reference.config)) == len(state)


def test_released_layout_tensor_names_and_parameter_count():
    """The released config: 1600 original tensors and 1,774,566,400 stored parameters (spec section 2)."""
    config = CodecTTSAudioTokenizerConfig()
    shapes = original_tensor_shapes(config)
    assert len(shapes) == 1600
    stored = sum(torch.Size(s).numel() for s in shapes.values())
    assert stored == 1_774_566_400
    with torch.device("meta"):
        model = CodecTTSAudioTokenizerModel(config)
    g_params = sum(torch.Size(s).numel() for k, s in shapes.items() if k.endswith("original0"))
    assert model.num_parameters() == stored - g_params
