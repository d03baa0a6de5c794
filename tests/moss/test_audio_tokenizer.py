"""Golden parity of the audio tokenizer with the original MOSS-Audio-Tokenizer, through the converter.

Layout reminders: golden codes are ``(n_q, batch, frames)``, ours ``(batch, n_q, frames)``; golden hidden states and
stage outputs are channel-first ``(batch, channels, steps)``, ours time-major. The original floors code lengths (the
partial last frame gets content-independent codes), we count it (ceil) and encode it from the zero-padded audio, so
codes are compared on the frames the original considers valid, and on its padding frames where both mask.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel

import codectts  # noqa: F401  (registers the Auto classes)
from codectts.conversion import convert_checkpoint
from codectts.modeling.moss.audio_tokenizer import CodecTTSAudioTokenizerModel

GOLDEN = Path(__file__).parents[1] / "fixtures" / "golden" / "audio_tokenizer"
HOP = 1920


def assert_close(actual: torch.Tensor, expected: torch.Tensor, what: str = "") -> None:
    """float32 parity: absolute error within 1e-5 of the reference's scale."""
    assert actual.shape == expected.shape, (what, actual.shape, expected.shape)
    scale = expected.abs().max().item()
    err = (actual.float() - expected.float()).abs().max().item()
    assert err <= 1e-5 * max(scale, 1.0), f"{what}: max abs error {err:.3g} for scale {scale:.3g}"


def golden_codes(key: str) -> torch.Tensor:
    return OUT[key].permute(1, 0, 2)  # (n_q, B, F) -> (B, n_q, F)


OUT = load_file(GOLDEN / "outputs.safetensors")
INP = load_file(GOLDEN / "inputs.safetensors")
WAV_LONG, WAV_SHORT = INP["wav_long"], INP["wav_short"]


def _convert(tmp_path_factory, config_name: str) -> CodecTTSAudioTokenizerModel:
    src = tmp_path_factory.mktemp("original")
    shutil.copy(GOLDEN / "model" / config_name, src / "config.json")
    shutil.copy(GOLDEN / "model" / "model.safetensors", src / "model.safetensors")
    dst = tmp_path_factory.mktemp("converted") / "codec"
    convert_checkpoint(src, dst)
    model = AutoModel.from_pretrained(dst)
    # By name: pytest may also import the repo root as a package named after its folder (a second class object).
    assert type(model).__name__ == CodecTTSAudioTokenizerModel.__name__
    return model.eval()


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return _convert(tmp_path_factory, "config.json")


@pytest.fixture(scope="module")
def model_ctx032(tmp_path_factory):
    return _convert(tmp_path_factory, "config_ctx032.json")


@pytest.fixture(scope="module")
def batch_inputs():
    x = torch.zeros(2, 1, WAV_LONG.numel())
    x[0, 0] = WAV_LONG
    x[1, 0, : WAV_SHORT.numel()] = WAV_SHORT
    mask = torch.zeros(2, WAV_LONG.numel(), dtype=torch.bool)
    mask[0] = True
    mask[1, : WAV_SHORT.numel()] = True
    return x, mask


def test_converted_config_and_parameter_count(model):
    meta = json.loads((GOLDEN / "meta.json").read_text())
    # Weight norm folds (g, v) into one weight: the golden count minus one g per weight-normed conv.
    g_tensors = [t for n, t in load_file(GOLDEN / "model" / "model.safetensors").items() if n.endswith("original0")]
    g_params = sum(t.numel() for t in g_tensors)
    assert len(g_tensors) == 2 + 2 * model.config.num_quantizers
    assert model.num_parameters() == meta["n_params"] - g_params
    assert model.config.model_type == "codectts_audio_tokenizer"
    assert model.config.stage_windows("encoder") == [None, 1000, None, 500, None, 250, None, 125]
    assert model.config.frame_rate == 12.5


@pytest.mark.parametrize("nq", [None, 16, 8, 4, 1])
def test_encode_matches_golden(model, nq):
    key = f"enc_long_nq{'all' if nq is None else nq}"
    with torch.no_grad():
        out = model.encode(WAV_LONG.view(1, 1, -1), num_quantizers=nq)
    expected = golden_codes(f"{key}.audio_codes")
    valid = int(OUT[f"{key}.audio_codes_lengths"][0])  # the original's floor length: 28
    assert valid == WAV_LONG.numel() // HOP
    assert out.audio_codes.dtype == torch.int64
    assert out.audio_codes.shape == expected.shape  # (1, nq, 29)
    assert torch.equal(out.audio_codes[..., :valid], expected[..., :valid])
    # Our length counts the partial last frame.
    assert out.audio_codes_lengths.tolist() == [-(-WAV_LONG.numel() // HOP)]
    if nq is None:
        assert_close(out.encoder_hidden_states, OUT[f"{key}.encoder_hidden_states"].transpose(1, 2), "hidden")


def test_partial_frame_is_encoded_from_zero_padded_audio(model):
    padded = torch.nn.functional.pad(WAV_LONG, (0, 29 * HOP - WAV_LONG.numel()))
    with torch.no_grad():
        partial = model.encode(WAV_LONG.view(1, -1))
        full = model.encode(padded.view(1, -1))
    assert torch.equal(partial.audio_codes, full.audio_codes)
    assert partial.audio_codes_lengths.tolist() == full.audio_codes_lengths.tolist() == [29]


@pytest.mark.parametrize("nq", [None, 8])
def test_batch_encode_with_padding_matches_golden(model, batch_inputs, nq):
    key = f"enc_batch_nq{'all' if nq is None else nq}"
    x, mask = batch_inputs
    with torch.no_grad():
        out = model.encode(x, padding_mask=mask, num_quantizers=nq)
    expected = golden_codes(f"{key}.audio_codes")
    floor_lengths = OUT[f"{key}.audio_codes_lengths"].tolist()  # [28, 12]
    assert out.audio_codes_lengths.tolist() == [29, 13]
    for row, valid in enumerate(floor_lengths):
        assert torch.equal(out.audio_codes[row, :, :valid], expected[row, :, :valid])
    # Frames past our length are padding in both implementations: same content-independent codes.
    assert torch.equal(out.audio_codes[1, :, 13:], expected[1, :, 13:])
    assert_close(out.encoder_hidden_states, OUT[f"{key}.encoder_hidden_states"].transpose(1, 2), "hidden")
    if nq == 8:
        assert torch.equal(expected, golden_codes("batch_encode_nq8.audio_codes"))


def test_batch_equals_single_items(model, batch_inputs):
    x, mask = batch_inputs
    with torch.no_grad():
        batched = model.encode(x, padding_mask=mask)
        short = model.encode(WAV_SHORT.view(1, 1, -1))
        long = model.encode(WAV_LONG.view(1, 1, -1))
        assert torch.equal(batched.audio_codes[1:, :, :13], short.audio_codes)
        assert torch.equal(batched.audio_codes[:1], long.audio_codes)
        dec = model.decode(batched.audio_codes, batched.audio_codes_lengths)
        dec_short = model.decode(short.audio_codes)
    assert dec.audio_values_lengths.tolist() == [29 * HOP, 13 * HOP]
    assert_close(dec.audio_values[1:, :, : 13 * HOP], dec_short.audio_values, "batched decode")
    assert dec.audio_values[1, :, 13 * HOP :].abs().max() == 0


@pytest.mark.parametrize("nq", [None, 8, 1])
def test_decode_matches_golden(model, nq):
    key = f"dec_long_nq{'all' if nq is None else nq}"
    codes = golden_codes("enc_long_nqall.audio_codes")[..., :28]
    with torch.no_grad():
        by_arg = model.decode(codes, num_quantizers=nq)
        by_slice = model.decode(codes[:, : (nq or 32)])
    assert_close(by_arg.audio_values, OUT[f"{key}.audio"], key)
    assert torch.equal(by_arg.audio_values, by_slice.audio_values)
    assert by_arg.audio_values_lengths.tolist() == OUT[f"{key}.audio_lengths"].tolist()


def test_decode_2d_codes_and_dequantized_latents(model):
    codes = golden_codes("enc_long_nqall.audio_codes")[..., :28]
    with torch.no_grad():
        three_d = model.decode(codes).audio_values
        two_d = model.decode(codes[0]).audio_values
        latents = model.quantizer.decode(codes)
    assert int(OUT["dec_long_2d.equals_dec_long_nqall"]) == 1
    assert torch.equal(two_d, three_d)
    assert_close(latents.transpose(1, 2), OUT["dec_long_nqall.quantized_zq"], "quantized")


def test_batch_decode_with_lengths_matches_golden(model):
    codes = golden_codes("enc_batch_nqall.audio_codes")
    lengths = OUT["enc_batch_nqall.audio_codes_lengths"]  # the original's [28, 12]
    with torch.no_grad():
        out = model.decode(codes, audio_codes_lengths=lengths)
    expected_lengths = OUT["dec_batch_nqall.audio_lengths"]
    assert out.audio_values_lengths.tolist() == expected_lengths.tolist()
    for row, n in enumerate(expected_lengths.tolist()):
        assert_close(out.audio_values[row, :, :n], OUT["dec_batch_nqall.audio"][row, :, :n], f"row {row}")
        assert not out.audio_values[row, :, n:].any()


def test_decode_of_ragged_items_with_padding_ids(model):
    """`batch_decode([codes_b0[:, :28], codes_b1[:8, :12]], num_quantizers=8)` of the original, as one padded call."""
    codes = golden_codes("enc_batch_nqall.audio_codes")
    padded = torch.full((2, 8, 28), 10_000)  # out-of-range pad id: ignored past the lengths
    padded[0] = codes[0, :8, :28]
    padded[1, :, :12] = codes[1, :8, :12]
    with torch.no_grad():
        out = model.decode(padded, audio_codes_lengths=torch.tensor([28, 12]))
    assert out.audio_values_lengths.tolist() == OUT["batch_decode_nq8.audio_lengths"].tolist()
    for row, n in enumerate(out.audio_values_lengths.tolist()):
        assert_close(out.audio_values[row, :, :n], OUT["batch_decode_nq8.audio"][row, :, :n], f"row {row}")


@pytest.mark.parametrize("nq", [None, 4])
def test_forward_matches_golden(model, batch_inputs, nq):
    key = "forward_batch" if nq is None else "forward_batch_nq4"
    x, mask = batch_inputs
    with torch.no_grad():
        out = model(input_values=x, padding_mask=mask, num_quantizers=nq)
    expected_codes = golden_codes(f"{key}.audio_codes")
    assert out.audio_codes.shape == expected_codes.shape
    for row, valid in enumerate([28, 12]):
        assert torch.equal(out.audio_codes[row, :, :valid], expected_codes[row, :, :valid])
        n = valid * HOP  # audio of the original's valid frames (its partial frame decodes other codes)
        assert_close(out.audio_values[row, :, :n], OUT[f"{key}.audio"][row, :, :n], f"{key} row {row}")
    assert out.audio_values_lengths.tolist() == [29 * HOP, 13 * HOP]


def test_intermediate_stage_outputs_match_golden(model):
    captured = {}
    hooks = []
    for part in ("encoder", "decoder"):
        for index, stage in enumerate(getattr(model, part).stages):
            if hasattr(stage, "layers"):
                hooks.append(
                    stage.register_forward_hook(
                        lambda _m, _i, out, name=f"{part}.{index}": captured.__setitem__(name, out.detach())
                    )
                )
    try:
        with torch.no_grad():
            model.encode(WAV_LONG.view(1, 1, -1))
            model.decode(golden_codes("enc_long_nqall.audio_codes")[..., :28])
    finally:
        for hook in hooks:
            hook.remove()
    names = sorted(k.removeprefix("intermediate.").removesuffix(".out") for k in OUT if k.startswith("intermediate."))
    assert sorted(captured) == names
    for name in names:
        assert_close(captured[name].transpose(1, 2), OUT[f"intermediate.{name}.out"], name)


def test_short_context_offline_matches_golden(model_ctx032):
    assert model_ctx032.config.stage_windows("encoder") == [None, 32, None, 16, None, 8, None, 4]
    with torch.no_grad():
        enc = model_ctx032.encode(WAV_LONG.view(1, 1, -1))
        # The recorded short-context decode decodes the 10 s model's codes.
        dec = model_ctx032.decode(golden_codes("enc_long_nqall.audio_codes")[..., :28])
    expected = golden_codes("ctx032_enc_long.audio_codes")
    assert torch.equal(enc.audio_codes[..., :28], expected[..., :28])
    assert_close(enc.encoder_hidden_states, OUT["ctx032_enc_long.encoder_hidden_states"].transpose(1, 2), "hidden")
    assert_close(dec.audio_values, OUT["ctx032_dec_long.audio"], "ctx032 decode")


@pytest.mark.parametrize("frames_per_chunk,key", [(5, "0p4"), (1, "0p08")])
def test_streaming_matches_golden_chunked_within_window(model, frames_per_chunk, key):
    """Below the 10 s window the original's chunked mode is exact; ours must agree with it chunk for chunk."""
    wav = WAV_LONG[: 28 * HOP].view(1, 1, -1)  # the original's chunked encode drops the partial frame
    with torch.no_grad():
        state = model.init_streaming_state("encoder", 1)
        enc = [model.encode(c, past_key_values=state) for c in wav.split(frames_per_chunk * HOP, dim=-1)]
        codes = torch.cat([e.audio_codes for e in enc], dim=-1)
        hidden = torch.cat([e.encoder_hidden_states for e in enc], dim=1)
        golden = golden_codes("enc_long_nqall.audio_codes")[..., :28]  # what the recorded chunked decode decoded
        dec_state = model.init_streaming_state("decoder", 1)
        audio = torch.cat(
            [model.decode(c, past_key_values=dec_state).audio_values for c in golden.split(frames_per_chunk, -1)],
            dim=-1,
        )
    assert torch.equal(codes, golden_codes(f"enc_long_chunk{key}.audio_codes"))
    assert_close(hidden, OUT[f"enc_long_chunk{key}.encoder_hidden_states"].transpose(1, 2), "chunked hidden")
    assert_close(audio, OUT[f"dec_long_chunk{key}.audio"], "chunked decode")


def test_save_load_round_trip(model, tmp_path):
    model.save_pretrained(tmp_path / "again")
    reloaded = AutoModel.from_pretrained(tmp_path / "again").eval()
    a_cfg, b_cfg = model.config.to_dict(), reloaded.config.to_dict()
    a_cfg.pop("_name_or_path"), b_cfg.pop("_name_or_path")
    assert a_cfg == b_cfg
    for (name, a), (_, b) in zip(model.state_dict().items(), reloaded.state_dict().items()):
        assert torch.equal(a, b), name
    with torch.no_grad():
        a = model.encode(WAV_SHORT.view(1, -1))
        b = reloaded.encode(WAV_SHORT.view(1, -1))
    assert torch.equal(a.audio_codes, b.audio_codes)
