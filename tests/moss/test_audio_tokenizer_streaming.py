"""Audio tokenizer: windowed attention (no dense T x T mask) and streaming == offline, also beyond the window."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from codectts.configuration.moss.audio_tokenizer import CodecTTSAudioTokenizerConfig
from codectts.modeling.moss.audio_tokenizer import CodecTTSAudioTokenizerModel
from codectts.modeling.moss.codec_streaming import CodecStreamingState
from codectts.modeling.moss.codec_transformer import sliding_window_attention

HOP = 1920


def random_tiny_model(seed: int = 0, **config_overrides) -> CodecTTSAudioTokenizerModel:
    """Tiny codec with O(1) random weights (large layer scales, so attention matters in every output)."""
    model = CodecTTSAudioTokenizerModel(CodecTTSAudioTokenizerConfig.tiny(**config_overrides)).eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            if "layer_scale" in name:
                param.copy_(0.3 + 0.7 * torch.rand(param.shape, generator=generator))
            elif "layernorm.weight" in name:
                param.copy_(1 + 0.1 * noise)
            elif name.endswith("bias"):
                param.copy_(0.05 * noise)
            elif "codebook" in name:
                param.copy_(noise)
            else:
                param.copy_(noise / param.shape[-1] ** 0.5)
    return model


def dense_reference_attention(query, key, value, window):
    past = key.shape[2] - query.shape[2]
    q_pos = torch.arange(past, key.shape[2])[:, None]
    k_pos = torch.arange(key.shape[2])[None, :]
    mask = (q_pos - k_pos >= 0) & (q_pos - k_pos < window)
    scores = query @ key.transpose(-1, -2) / query.shape[-1] ** 0.5
    return scores.masked_fill(~mask, float("-inf")).softmax(-1) @ value


@pytest.mark.parametrize(
    "steps,past,window", [(1, 0, 1), (37, 0, 4), (300, 0, 1000), (700, 0, 200), (700, 9, 10), (1, 31, 32), (50, 3, 7)]
)
def test_sliding_window_attention_matches_dense_reference(steps, past, window):
    generator = torch.Generator().manual_seed(steps + past + window)
    query = torch.randn(2, 3, steps, 16, generator=generator)
    key = torch.randn(2, 3, past + steps, 16, generator=generator)
    value = torch.randn(2, 3, past + steps, 16, generator=generator)
    out = sliding_window_attention(query, key, value, window)
    torch.testing.assert_close(out, dense_reference_attention(query, key, value, window), rtol=1e-5, atol=1e-5)


def test_long_input_never_builds_a_dense_attention_matrix(monkeypatch):
    """A 30 s clip (3000 steps at the first stage): every attention call sees a bounded block of keys."""
    calls = []
    sdpa = F.scaled_dot_product_attention

    def recording_sdpa(query, key, value, *args, **kwargs):
        calls.append(
            (query.shape[-2], key.shape[-2], None if kwargs.get("attn_mask") is None else kwargs["attn_mask"].numel())
        )
        return sdpa(query, key, value, *args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", recording_sdpa)
    model = random_tiny_model(context_duration=0.32)
    audio = torch.randn(1, 1, 30 * 24000, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        enc = model.encode(audio, num_quantizers=2)
        model.decode(enc.audio_codes)
    assert calls
    longest_stage = 30 * 24000 // 240
    largest_block = 512 + max(w for w in model.config.stage_windows("encoder") if w) - 1
    assert max(k for _, k, _ in calls) <= largest_block < longest_stage
    assert max(m or 0 for _, _, m in calls) <= 512 * largest_block


@pytest.fixture(scope="module")
def short_context_model():
    # 0.32 s context: windows 32/16/8/4 steps (4 frames), so a 1.2 s clip is far beyond the window at every stage.
    return random_tiny_model(seed=1, context_duration=0.32)


@pytest.fixture(scope="module")
def batch_audio():
    return torch.randn(3, 1, 14 * HOP + 700, generator=torch.Generator().manual_seed(3))


@pytest.mark.parametrize("frames_per_chunk", [1, 3, 7, 20])
def test_streaming_encode_equals_offline(short_context_model, batch_audio, frames_per_chunk):
    model = short_context_model
    with torch.no_grad():
        offline = model.encode(batch_audio)
        state = model.init_streaming_state("encoder", batch_size=3)
        chunks = [model.encode(c, past_key_values=state) for c in batch_audio.split(frames_per_chunk * HOP, dim=-1)]
    codes = torch.cat([c.audio_codes for c in chunks], dim=-1)
    hidden = torch.cat([c.encoder_hidden_states for c in chunks], dim=1)
    assert torch.equal(codes, offline.audio_codes)
    torch.testing.assert_close(hidden, offline.encoder_hidden_states, rtol=1e-5, atol=1e-5)
    assert state.num_frames == offline.audio_codes.shape[-1] and state.finished  # ended on a partial frame
    assert all(c.past_key_values is state for c in chunks)


@pytest.mark.parametrize("frames_per_chunk", [1, 4, 9, 31])
def test_streaming_decode_equals_offline(short_context_model, frames_per_chunk):
    model = short_context_model
    codes = torch.randint(0, model.config.codebook_size, (3, 12, 31), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        offline = model.decode(codes).audio_values
        state = None
        pieces = []
        for chunk in codes.split(frames_per_chunk, dim=-1):
            out = model.decode(chunk, past_key_values=state, use_cache=True)
            state = out.past_key_values
            pieces.append(out.audio_values)
    assert isinstance(state, CodecStreamingState) and state.num_frames == 31
    streamed = torch.cat(pieces, dim=-1)
    torch.testing.assert_close(streamed, offline, rtol=1e-5, atol=1e-5 * offline.abs().max().item())


def test_streaming_with_the_default_ten_second_window():
    model = random_tiny_model(seed=2)
    audio = torch.randn(2, 1, 9 * HOP, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        offline = model.encode(audio)
        first = model.encode(audio[..., : 4 * HOP], use_cache=True)
        second = model.encode(audio[..., 4 * HOP :], past_key_values=first.past_key_values)
    assert torch.equal(torch.cat([first.audio_codes, second.audio_codes], -1), offline.audio_codes)
    # Tuple outputs carry the state too, so `use_cache=True, return_dict=False` does not lose it.
    with torch.no_grad():
        codes, lengths, state = model.encode(audio[..., : 4 * HOP], use_cache=True, return_dict=False)
        rest, _, same_state = model.encode(audio[..., 4 * HOP :], past_key_values=state, return_dict=False)
        audio_a, _, dec_state = model.decode(offline.audio_codes[..., :4], use_cache=True, return_dict=False)
        audio_b, _, _ = model.decode(offline.audio_codes[..., 4:], past_key_values=dec_state, return_dict=False)
        audio_full = model.decode(offline.audio_codes).audio_values
    assert same_state is state and lengths.tolist() == [4, 4]
    assert torch.equal(torch.cat([codes, rest], -1), offline.audio_codes)
    torch.testing.assert_close(
        torch.cat([audio_a, audio_b], -1), audio_full, rtol=1e-5, atol=1e-5 * audio_full.abs().max().item()
    )


def test_offline_output_only_depends_on_the_window(short_context_model):
    """Sliding window offline too: changing audio more than a window back leaves later frames unchanged."""
    model = short_context_model
    audio = torch.randn(1, 1, 40 * HOP, generator=torch.Generator().manual_seed(6))
    edited = audio.clone()
    edited[..., : 2 * HOP] = 0
    with torch.no_grad():
        a = model.encode(audio).encoder_hidden_states
        b = model.encode(edited).encoder_hidden_states
    # The edit covers steps < 16 of the 100 Hz stage; each of the 2 layers of a stage reaches window - 1 steps
    # further: < 16 + 2*31 = 78 -> (50 Hz) < 39 + 2*15 = 69 -> (25 Hz) < 35 + 2*7 = 49 -> (12.5 Hz) < 25 + 2*3 = 31.
    torch.testing.assert_close(a[:, 31:], b[:, 31:], rtol=0, atol=1e-5)
    assert (a[:, :2] - b[:, :2]).abs().max() > 1e-3


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("past", [0, 31])
def test_gpu_sliding_window_attention_matches_dense_reference(past):
    """On GPU in bf16 the flash-attention window (when installed) or the blocked SDPA path must match the dense mask."""
    generator = torch.Generator().manual_seed(past)
    query = torch.randn(2, 4, 700, 64, generator=generator)
    key = torch.randn(2, 4, past + 700, 64, generator=generator)
    value = torch.randn(2, 4, past + 700, 64, generator=generator)
    expected = dense_reference_attention(query, key, value, 32)
    out = sliding_window_attention(*(t.cuda().bfloat16() for t in (query, key, value)), 32)
    torch.testing.assert_close(out.float().cpu(), expected, rtol=2e-2, atol=2e-2)
