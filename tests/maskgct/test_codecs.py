"""Semantic codec (RepCodec) and acoustic codec (encoder + FVQ RVQ + Vocos) parity with the original."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel

from codectts.modeling.maskgct import MaskGctAcousticCodecModel, MaskGctSemanticCodecModel

GOLDEN = Path(__file__).parent.parent / "fixtures" / "golden" / "maskgct"


def outputs(name):
    return load_file(str(GOLDEN / f"outputs_{name}.safetensors"))


@pytest.fixture(scope="module")
def semantic(converted):
    return AutoModel.from_pretrained(str(converted / "semantic_codec")).eval()


@pytest.fixture(scope="module")
def acoustic(converted):
    return AutoModel.from_pretrained(str(converted / "acoustic_codec")).eval()


def test_components_load_alone(semantic, acoustic, model):
    assert isinstance(semantic, MaskGctSemanticCodecModel) and isinstance(acoustic, MaskGctAcousticCodecModel)
    assert isinstance(model.acoustic_codec, MaskGctAcousticCodecModel)


@torch.no_grad()
def test_semantic_codec_quantize_forward_decode(semantic):
    o = outputs("semantic_codec")
    codes, quantized = semantic.quantize(features=o["in.feat_b2"])
    assert torch.equal(codes, o["quantize_b2.codes"])
    torch.testing.assert_close(quantized, o["quantize_b2.quantized"], atol=1e-5, rtol=0)
    out = semantic(o["in.feat_b2"])
    torch.testing.assert_close(out.reconstruction, o["forward_b2.x_rec"], atol=1e-5, rtol=0)
    assert torch.equal(out.codes, o["forward_b2.all_indices"][0])
    torch.testing.assert_close(semantic.vq2emb(codes[None]), o["vq2emb_b2"], atol=1e-5, rtol=0)
    torch.testing.assert_close(semantic.decode(codes), o["vq2emb_b2.decoded"], atol=1e-5, rtol=0)
    # normalisation statistics + quantize = the pipeline's semantic code
    feat = semantic.normalize_features(o["w2v.hidden_states_17"])
    torch.testing.assert_close(feat, o["w2v.feat_norm"], atol=1e-5, rtol=0)
    codes, rec = semantic.quantize(features=o["w2v.feat_norm"])
    assert torch.equal(codes, o["pipe.semantic_code"])
    torch.testing.assert_close(rec, o["pipe.rec_feat"], atol=1e-5, rtol=0)


def test_semantic_codec_bad_input(semantic):
    with pytest.raises(ValueError, match="features must be"):
        semantic.quantize(features=torch.zeros(1, 5, semantic.config.hidden_size + 1))
    with pytest.raises(ValueError, match="out of range"):
        semantic.decode(torch.full((1, 3), semantic.config.codebook_size))


@torch.no_grad()
def test_acoustic_encode_all_and_truncated(acoustic):
    o = outputs("acoustic_codec")
    audio = o["in.audio_24k"]
    out = acoustic.encode(audio=audio)
    assert torch.equal(out.audio_codes, o["pipe.acoustic_code"])
    assert out.audio_codes.shape[1] == acoustic.num_frames(audio.shape[-1])
    for k in (1, 2, acoustic.config.num_quantizers):
        out = acoustic.encode(audio=audio, num_quantizers=k)
        assert out.audio_codes.shape[-1] == k
        assert torch.equal(out.audio_codes.permute(2, 0, 1), o[f"quantize_n{k}.codes"])
        torch.testing.assert_close(out.quantized, o[f"quantize_n{k}.quantized_out"], atol=1e-4, rtol=0)


@torch.no_grad()
def test_acoustic_decode_any_number_of_layers(acoustic):
    o = outputs("acoustic_codec")
    codes = o["pipe.acoustic_code"]
    for k in (1, 2, acoustic.config.num_quantizers):
        audio = acoustic.decode(audio_codes=codes[..., :k]).audio_values
        assert audio.shape == (codes.shape[0], codes.shape[1] * acoustic.config.hop_length)
        torch.testing.assert_close(audio, o[f"decode_n{k}.audio"][:, 0], atol=1e-4, rtol=0)


def test_acoustic_bad_input(acoustic):
    q, v = acoustic.config.num_quantizers, acoustic.config.codebook_size
    with pytest.raises(ValueError, match="out of range"):
        acoustic.decode(audio_codes=torch.full((1, 4, q), v))
    with pytest.raises(ValueError, match="number of quantizers"):
        acoustic.decode(audio_codes=torch.zeros(1, 4, q + 1, dtype=torch.long))
    with pytest.raises(ValueError, match="num_quantizers"):
        acoustic.encode(audio=torch.zeros(1, 4800), num_quantizers=q + 1)
    with pytest.raises(ValueError, match="too short"):
        acoustic.encode(audio=torch.zeros(1, 100))
    with pytest.raises(TypeError, match="float"):
        acoustic.encode(audio=torch.zeros(1, 4800, dtype=torch.long))
