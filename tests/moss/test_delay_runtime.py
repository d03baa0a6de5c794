"""Delay generator runtime features: accelerate offload, training (loss goes down, gradient checkpointing), compile."""

import pytest
import torch
from codectts.configuration.moss.delay import CodecTTSDelayConfig
from codectts.modeling.moss.delay import CodecTTSDelayForConditionalGeneration
from codectts.modeling.moss.delay_pattern import audio_block_rows

IDS = dict(
    pad_token_id=0, im_start_token_id=1, im_end_token_id=2, audio_start_token_id=3, audio_end_token_id=4,
    audio_user_slot_token_id=5, audio_assistant_gen_slot_token_id=6, audio_assistant_delay_slot_token_id=7,
)  # fmt: skip


def small_config(**overrides):
    text = dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=6, num_attention_heads=4,
                num_key_value_heads=2, head_dim=16, max_position_embeddings=512)  # fmt: skip
    return CodecTTSDelayConfig(text_config=text, n_vq=3, audio_vocab_size=32, **IDS, **overrides)


def random_prompts(batch=2, rows=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    text = torch.randint(8, 512, (batch, rows, 1), generator=g)
    return torch.cat([text, torch.full((batch, rows, 3), 32)], dim=-1)


def test_offload_to_cpu_and_disk_generates_the_same_tokens(tmp_path):
    torch.manual_seed(0)
    model = CodecTTSDelayForConditionalGeneration(small_config()).eval()
    model.save_pretrained(tmp_path / "model")
    prompts = random_prompts()
    reference = model.generate(prompts, max_new_tokens=20, do_sample=False)
    offloaded = CodecTTSDelayForConditionalGeneration.from_pretrained(
        tmp_path / "model", device_map="auto", max_memory={"cpu": 600_000, "disk": 10**9},
        offload_folder=tmp_path / "offload",
    )  # fmt: skip
    assert {"cpu", "disk"} <= set(offloaded.hf_device_map.values())
    assert torch.equal(offloaded.generate(prompts, max_new_tokens=20, do_sample=False), reference)


def training_batch(config, batch=4, frames=6, seed=0):
    """Packed rows `[text..., audio block]` + labels as the SFT pipeline builds them (shifted, pads ignored)."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(batch):
        text = torch.randint(8, config.vocab_size, (5,), generator=g)
        text_rows = torch.cat([text[:, None], torch.full((5, config.n_vq), config.audio_pad_code)], dim=1)
        codes = torch.randint(0, config.audio_vocab_size, (frames, config.n_vq), generator=g)
        block = audio_block_rows(
            codes, pad_code=config.audio_pad_code, audio_start_token_id=config.audio_start_token_id,
            audio_end_token_id=config.audio_end_token_id, gen_slot_token_id=config.audio_assistant_gen_slot_token_id,
            delay_slot_token_id=config.audio_assistant_delay_slot_token_id,
        )  # fmt: skip
        rows.append(torch.cat([text_rows, block]))
    full = torch.stack(rows)
    labels = full[:, 1:].clone()
    labels[..., 1:][labels[..., 1:] == config.audio_pad_code] = -100
    return full[:, :-1], labels


def test_training_lowers_the_loss_and_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    config = small_config()
    model = CodecTTSDelayForConditionalGeneration(config).train()
    input_ids, labels = training_batch(config)

    model.zero_grad()
    model(input_ids=input_ids, labels=labels).loss.backward()
    plain = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.gradient_checkpointing_enable()
    assert model.model.gradient_checkpointing
    model.zero_grad()
    model(input_ids=input_ids, labels=labels, use_cache=False).loss.backward()
    for name, grad in plain.items():
        torch.testing.assert_close(dict(model.named_parameters())[name].grad, grad, atol=1e-6, rtol=1e-5)
    assert plain["audio_embed_tokens.weight"].abs().sum() > 0 and plain["audio_lm_head.weight"].abs().sum() > 0

    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        optimizer.zero_grad()
        out = model(input_ids=input_ids, labels=labels, channelwise_loss_weight=[1.0] + [2.0] * config.n_vq)
        out.loss.backward()
        optimizer.step()
        losses.append(out.loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert out.channel_losses.shape == (1 + config.n_vq,)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="torch.compile of the decode step is exercised on CUDA")
def test_static_cache_compiled_decode_matches_eager_on_cuda():
    torch.manual_seed(0)
    model = CodecTTSDelayForConditionalGeneration(small_config()).eval().cuda()
    prompts = random_prompts().cuda()
    reference = model.generate(prompts, max_new_tokens=20, do_sample=False)
    compiled = model.generate(prompts, max_new_tokens=20, do_sample=False, cache_implementation="static")
    assert torch.equal(compiled, reference)
