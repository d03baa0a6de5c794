"""``codectts demo``: the whole synthesis path on a fresh machine, offline, with tiny random-weight models.

No real checkpoint can be downloaded here, so the demo builds everything locally — a byte-level tokenizer with the
MOSS special tokens, a tiny codec, tiny Delay and Local generators — and runs the real code path: reference WAV →
codec encoding → prompt → ``generate`` → decoding → WAV, timing every stage. The weights are random, so the audio is
noise; what it demonstrates is that every stage works end to end and how fast each one is.

To make random text heads open an audio block at all, generation gets a ``sequence_bias`` towards the audio-start
and gen-slot tokens (an ordinary transformers logits processor on the text channel); real checkpoints need no bias.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

# Qwen-style ChatML, as the MOSS-TTS tokenizers render it (no system prompt).
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>'"
    " + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
SPECIAL_TOKENS = {
    "pad_token_id": "<|endoftext|>",
    "im_start_token_id": "<|im_start|>",
    "im_end_token_id": "<|im_end|>",
    "audio_start_token_id": "<|audio_start|>",
    "audio_end_token_id": "<|audio_end|>",
    "audio_user_slot_token_id": "<|audio_user_slot|>",
    "audio_assistant_gen_slot_token_id": "<|audio_assistant_gen_slot|>",
    "audio_assistant_delay_slot_token_id": "<|audio_assistant_delay_slot|>",
}


def build_tiny_tokenizer():
    """A byte-level tokenizer (256 byte tokens, no merges) plus the MOSS special tokens, with a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    backend = Tokenizer(models.BPE(vocab={ch: i for i, ch in enumerate(alphabet)}, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<|endoftext|>", eos_token="<|im_end|>",
        additional_special_tokens=[t for t in SPECIAL_TOKENS.values() if t not in ("<|endoftext|>", "<|im_end|>")],
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def special_token_ids(tokenizer) -> dict[str, int]:
    return {name: tokenizer.convert_tokens_to_ids(token) for name, token in SPECIAL_TOKENS.items()}


def build_tiny_models(seed: int = 0, n_vq: int = 8):
    """Tokenizer, codec, Delay and Local generators with tiny random weights (consistent ids and sizes)."""
    from transformers import Qwen3Config

    from .configuration.moss.audio_tokenizer import CodecTTSAudioTokenizerConfig
    from .configuration.moss.delay import CodecTTSDelayConfig
    from .configuration.moss.local import CodecTTSLocalConfig
    from .modeling.moss.audio_tokenizer import CodecTTSAudioTokenizerModel
    from .modeling.moss.delay import CodecTTSDelayForConditionalGeneration
    from .modeling.moss.local import CodecTTSLocalForConditionalGeneration

    torch.manual_seed(seed)
    tokenizer = build_tiny_tokenizer()
    ids = special_token_ids(tokenizer)
    codec = CodecTTSAudioTokenizerModel(CodecTTSAudioTokenizerConfig.tiny()).eval()
    size = codec.config.codebook_size
    audio = dict(n_vq=n_vq, audio_vocab_size=size, audio_pad_code=size, sampling_rate=codec.config.sampling_rate)

    def backbone():
        return Qwen3Config(
            vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=4096,
        )

    delay = CodecTTSDelayForConditionalGeneration(CodecTTSDelayConfig(text_config=backbone(), **audio, **ids)).eval()
    local = CodecTTSLocalForConditionalGeneration(
        CodecTTSLocalConfig(
            text_config=backbone(), local_hidden_size=32, local_num_layers=2, local_intermediate_size=64,
            adapter_intermediate_size=64, **audio, **ids,
        )
    ).eval()
    return tokenizer, codec, delay, local


def reference_voice(seconds: float = 2.0, rate: int = 24000) -> np.ndarray:
    """A synthetic voiced sound: a gliding 120→180 Hz pulse train with formant-like harmonics."""
    t = np.arange(int(seconds * rate)) / rate
    f0 = 120 + 60 * t / seconds
    phase = 2 * np.pi * np.cumsum(f0) / rate
    wave = sum(np.sin(k * phase) / k * np.exp(-((k * f0 - 700) ** 2) / 2e5) for k in range(1, 30))
    envelope = 0.5 * (1 - np.cos(2 * np.pi * np.minimum(t, seconds - t) / 0.2).clip(-1, 1))
    return (0.3 * wave / np.abs(wave).max() * envelope).astype(np.float32)


def speaking_bias(config) -> dict[tuple[int], float]:
    """``sequence_bias`` that makes a random-weight generator open an audio block and keep it going.

    Delay prompts end before the audio block (the model must emit ``<|audio_start|>``); Local prompts already open
    it, so there only the gen slot gets a push.
    """
    gen = (config.audio_assistant_gen_slot_token_id,)
    if config.model_type == "codectts_local":
        return {gen: 4.0}
    return {(config.audio_start_token_id,): 10.0, gen: 6.0}


class _Timer:
    def __init__(self):
        self.rows: list[tuple[str, float, str]] = []

    @contextmanager
    def stage(self, name: str, note: str = ""):
        start = time.perf_counter()
        holder = {"note": note}
        yield holder
        self.rows.append((name, time.perf_counter() - start, holder["note"]))

    def print(self) -> None:
        width = max(len(name) for name, _, _ in self.rows)
        print(f"\n{'stage':<{width}}  {'seconds':>8}  notes")
        for name, seconds, note in self.rows:
            print(f"{name:<{width}}  {seconds:8.3f}  {note}")


def run_demo(out: Path, text: str, seed: int = 0, max_new_tokens: int = 80) -> list[Path]:
    """Run reference encoding → generation → decoding → WAV for both generators; returns the written files."""
    from .processing.audio_io import save_audio
    from .processing.moss.processor import CodecTTSProcessor

    print(
        "codectts demo: building TINY RANDOM-WEIGHT models locally (no checkpoint is downloaded).\n"
        "The audio they produce is noise; the demo shows that every stage runs and how long it takes."
    )
    out.mkdir(parents=True, exist_ok=True)
    timer = _Timer()
    with timer.stage("build tiny models") as s:
        tokenizer, codec, delay, local = build_tiny_models(seed)
        s["note"] = f"codec {sum(p.numel() for p in codec.parameters()) / 1e6:.2f} M params"
    rate = codec.config.sampling_rate
    reference = save_audio(reference_voice(rate=rate), out / "reference.wav", rate)
    written = [reference]

    for name, model in (("delay", delay), ("local", local)):
        processor = CodecTTSProcessor.from_model_config(model.config, tokenizer, codec)
        with timer.stage(f"{name}: encode reference + prompt") as s:
            message = processor.build_user_message(text=text, reference=[str(reference)], language="English")
            inputs = processor([[message]], mode="generation")
            s["note"] = f"prompt {inputs['input_ids'].shape[1]} rows x {inputs['input_ids'].shape[2]} channels"
        bias = speaking_bias(model.config)
        torch.manual_seed(seed)
        with timer.stage(f"{name}: generate") as s, torch.inference_mode():
            generated = model.generate(
                **inputs, do_sample=True, max_new_tokens=max_new_tokens, sequence_bias=bias,
                return_dict_in_generate=True,
            )
            steps = generated.sequences.shape[1] - inputs["input_ids"].shape[1]
            s["note"] = f"{steps} rows"
        with timer.stage(f"{name}: decode") as s:
            speech = processor.decode_generation(generated.sequences, input_ids=inputs["input_ids"])[0]
            seconds = speech.waveform.numel() / rate
            s["note"] = f"{len(speech.audio)} segment(s), {seconds:.2f} s of audio"
        wave = speech.waveform
        peak = float(wave.abs().max()) if wave.numel() else 0.0
        # random codec weights give an arbitrary level: normalise the peak so that the file is audible
        path = processor.save_audio(wave * (0.5 / peak) if peak > 0 else wave, out / f"{name}.wav")
        written.append(path)
    timer.print()
    print("\nwrote: " + ", ".join(str(p) for p in written))
    return written
