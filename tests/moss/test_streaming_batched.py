"""Independent codec streams at the same point share one batched call: `CodecStreamingState.stack` / `split`."""

import pytest
import torch

from codectts.configuration.moss.audio_tokenizer import CodecTTSAudioTokenizerConfig
from codectts.modeling.moss.audio_tokenizer import CodecTTSAudioTokenizerModel
from codectts.modeling.moss.codec_streaming import CodecStreamingState


def test_stacked_streams_continue_each_stream_exactly():
    torch.manual_seed(0)
    model = CodecTTSAudioTokenizerModel(CodecTTSAudioTokenizerConfig.tiny(context_duration=0.32)).eval()
    codes = torch.randint(0, model.config.codebook_size, (3, 12, 20), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        alone = [model.decode(codes[i : i + 1]).audio_values for i in range(3)]  # offline, one stream each
        # streams 0 and 1 start alone (different histories), then all three continue in batched calls
        states = [model.decode(codes[i : i + 1, :, :7], use_cache=True).streaming_state for i in range(3)]
        stacked = CodecStreamingState.stack(states)
        assert stacked.batch_size == 3 and stacked.num_frames == 7
        middle = model.decode(codes[:, :, 7:13], streaming_state=stacked).audio_values
        first, rest = stacked.split([1, 2])
        assert (first.batch_size, rest.batch_size) == (1, 2)
        tail_first = model.decode(codes[:1, :, 13:], streaming_state=first).audio_values
        tail_rest = model.decode(codes[1:, :, 13:], streaming_state=rest).audio_values
    hop = model.config.downsample_rate
    tails = torch.cat([tail_first, tail_rest])
    for i in range(3):
        want = alone[i][0, :, 7 * hop :]
        got = torch.cat([middle[i], tails[i]], dim=-1)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * want.abs().max().item())


def test_only_streams_at_the_same_point_stack():
    model = CodecTTSAudioTokenizerModel(CodecTTSAudioTokenizerConfig.tiny()).eval()
    codes = torch.zeros(1, 12, 4, dtype=torch.long)
    with torch.no_grad():
        early = model.decode(codes[..., :2], use_cache=True).streaming_state
        late = model.decode(codes, use_cache=True).streaming_state
    with pytest.raises(ValueError, match="same position"):
        CodecStreamingState.stack([early, late])
