"""pipeline("text-to-speech") on a converted bundle: text or chat input (reference voice), sampling via generate_kwargs."""

from __future__ import annotations

from pathlib import Path

import codectts  # noqa: F401  (registers the Auto classes)
import numpy as np
import pytest
import soundfile as sf
import torch
from codectts.conversion import convert_checkpoint
from safetensors.torch import load_file

GOLDEN = Path(__file__).parents[1] / "fixtures" / "golden"


@pytest.fixture(scope="module", params=["delay", "local"])
def tts(request, tmp_path_factory):
    from transformers import pipeline

    folder = tmp_path_factory.mktemp(f"tts_{request.param}") / "bundle"
    convert_checkpoint(
        GOLDEN / f"moss_tts_{request.param}" / "model",
        folder,
        tokenizer=GOLDEN / "tokenizer",
        audio_tokenizer=GOLDEN / "audio_tokenizer" / "model",
    )
    return pipeline("text-to-speech", model=str(folder)), folder


def fresh_model(folder):
    # transformers 5.0's text-to-audio pipeline writes generation defaults into `model.config` (it updates the
    # config in place), after which a plain `model.generate()` refuses to run: compare with a separate instance.
    from transformers import AutoModel

    return AutoModel.from_pretrained(folder).eval()


GREEDY = {"max_new_tokens": 12, "do_sample": False}
# sampling settings travel through generate_kwargs (same seed -> same draw as a direct generate call)
SAMPLING = {"max_new_tokens": 12, "do_sample": True, "audio_temperature": 0.9, "audio_top_k": 5, "audio_top_p": 0.9}


def test_text_input_matches_model_generate_and_processor_decode(tts):
    tts, folder = tts
    torch.manual_seed(0)
    out = tts("Hello world.", generate_kwargs=SAMPLING)
    assert set(out) == {"audio", "sampling_rate"} and out["sampling_rate"] == tts.processor.sampling_rate
    assert out["audio"].dtype == np.float32 and out["audio"].ndim == 1

    processor, model = tts.processor, fresh_model(folder)
    inputs = processor("Hello world.")
    torch.manual_seed(0)
    generated = model.generate(**inputs, **SAMPLING, return_dict_in_generate=True)
    expected = processor.decode_generation(generated.sequences, input_ids=inputs["input_ids"])[0]
    np.testing.assert_allclose(
        out["audio"], expected.waveform.numpy(), atol=1e-5 * max(1.0, expected.waveform.abs().max())
    )


def test_chat_input_with_reference_voice(tts, tmp_path):
    tts, folder = tts
    wave = load_file(GOLDEN / "audio_tokenizer" / "inputs.safetensors")["wav_short"].numpy()
    sf.write(tmp_path / "voice.wav", wave, 24000, subtype="FLOAT")
    chat = [
        {
            "role": "user",
            "content": [
                {"type": "audio", "path": str(tmp_path / "voice.wav")},
                {"type": "text", "text": "Hello world."},
            ],
        }
    ]
    out = tts(chat, generate_kwargs=GREEDY)

    processor, model = tts.processor, fresh_model(folder)
    inputs = processor.apply_chat_template(chat)
    reference = processor.encode_audio([str(tmp_path / "voice.wav")])[0]
    in_prompt = processor.decode_generation(inputs["input_ids"], prompt_length=0, decode_audio=False)[0]
    assert len(in_prompt.audio_codes) == 1 and torch.equal(in_prompt.audio_codes[0], reference)
    generated = model.generate(**inputs, **GREEDY, return_dict_in_generate=True)
    expected = processor.batch_decode(generated.sequences, input_ids=inputs["input_ids"])[0]
    np.testing.assert_allclose(out["audio"], expected.numpy(), atol=1e-5 * max(1.0, float(expected.abs().max())))
