"""Second stage (logits, loss, one-shot top-k=1 sampling, the original's end-to-end rows) and the speaker encoder
(mel, partials, embeddings from mel / waveform / file, batches with a partial mask)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file

from codectts.processing.metavoice import mel_power_spectrogram
from codectts.processing.metavoice.speaker_features import partial_slices

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "golden" / "metavoice"
SECOND = load_file(str(GOLDEN / "second_stage" / "outputs.safetensors"))
SECOND_INFO = json.loads((GOLDEN / "second_stage" / "meta.json").read_text())["info"]
SPEAKER = load_file(str(GOLDEN / "speaker_encoder" / "outputs.safetensors"))
SPEAKER_INFO = json.loads((GOLDEN / "speaker_encoder" / "meta.json").read_text())["info"]


def test_second_stage_logits_and_loss(model):
    out = model.second_stage(
        SECOND["forward.idx"],
        speaker_embeds=SECOND["inputs.speaker_embs"],
        labels=SECOND["forward.targets"].masked_fill(SECOND["forward.targets"] == -1, -100),
    )
    assert len(out.logits) == model.config.second_stage_config.num_output_heads
    for i, logits in enumerate(out.logits):
        torch.testing.assert_close(logits, SECOND[f"forward.logits.{i}"], atol=1e-5, rtol=0)
    torch.testing.assert_close(out.loss, SECOND["forward.loss"], atol=1e-5, rtol=0)
    no_speaker = model.second_stage(SECOND["forward.idx"]).logits[0]
    assert torch.equal(no_speaker.argmax(-1), SECOND["forward_nospk.0.argmax"])
    torch.testing.assert_close(no_speaker.logsumexp(-1), SECOND["forward_nospk.0.logsumexp"], atol=1e-5, rtol=0)


def test_second_stage_generate_top_k_1(model):
    idx, speakers = SECOND["forward.idx"], SECOND["inputs.speaker_embs"]
    tokens = model.second_stage.generate(idx, speaker_embeds=speakers, top_k=1)
    assert torch.equal(tokens, SECOND["generate.topk1"])
    assert torch.equal(tokens, SECOND["generate.topk1_bs1"])
    assert torch.equal(model.second_stage.generate(idx, speaker_embeds=speakers, do_sample=False), tokens)
    # shorter inputs are padded to the block with the pad code: same result
    cut = int((idx[:, 0] != model.config.second_stage_config.pad_token_id).sum(-1).max()) + 1
    assert torch.equal(model.second_stage.generate(idx[..., :cut], speaker_embeds=speakers, top_k=1), tokens)


def test_second_stage_original_end_to_end_rows(model, processor):
    """Rebuild the original's second-stage input rows from text + codes; the original adapter on the output."""
    config = model.config.second_stage_config
    second_tokenizer = processor.tokenizer.with_offset(config.text_offset)
    for b, text in enumerate(["Good morning!", "Rain in the evening."]):
        raw = SECOND[f"e2e.b{b}.raw_tokens"]
        codes = SECOND[f"inputs.codes.{b}"][0]
        ids = torch.tensor(second_tokenizer.encode(text))
        rows = torch.full((2, config.block_size), config.pad_token_id)
        rows[0, : len(ids)] = ids
        rows[0, len(ids) : len(ids) + codes.shape[1]] = codes[0]
        rows[1, len(ids) : len(ids) + codes.shape[1]] = codes[1]
        assert torch.equal(rows, raw[:2])
        predicted = model.second_stage.generate(
            rows[None], speaker_embeds=SECOND["inputs.speaker_embs"][b : b + 1], top_k=1
        )[0]
        assert torch.equal(predicted, raw[2:])
        text_ids, audio = processor.split_second_stage_rows(raw.tolist())
        assert audio == SECOND[f"e2e.b{b}.audio_ids"].tolist()
        assert text_ids == SECOND_INFO["e2e"][f"b{b}"]["text_ids"]


def test_second_stage_bad_input(model):
    config = model.config.second_stage_config
    with pytest.raises(ValueError, match="block_size"):
        model.second_stage(torch.zeros(1, 2, config.block_size + 1, dtype=torch.long))
    with pytest.raises(ValueError, match="input_ids"):
        model.second_stage(torch.zeros(1, 3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="outside"):
        model.second_stage(torch.full((1, 2, 4), config.vocab_sizes[1]))


@pytest.mark.parametrize("utt", ["utt0", "utt1"])
def test_mel_and_partials_match_librosa(utt):
    wav = SPEAKER[f"{utt}.wav"].numpy()
    mel = mel_power_spectrogram(wav)
    reference = SPEAKER[f"{utt}.mel"].numpy()
    np.testing.assert_allclose(mel, reference, rtol=1e-5, atol=1e-5 * float(np.abs(reference).max()))
    slices = [tuple(int(x) for x in s) for s in SPEAKER_INFO[f"{utt}.slices"]["mel_slices"]]
    assert partial_slices(len(wav)) == slices


def test_speaker_embeddings_from_mel(model):
    out = model.speaker_encoder(SPEAKER["forward.mels"])
    torch.testing.assert_close(out.speaker_embeds, SPEAKER["forward.embeds"], atol=1e-5, rtol=0)


def test_speaker_embeddings_from_waveform(model, processor):
    for utt in ("utt0", "utt1"):
        wav = SPEAKER[f"{utt}.wav"].numpy()
        features = processor.speaker_features((wav, 16000), trim=False)
        out = model.speaker_encoder(features[None])
        torch.testing.assert_close(out.partial_embeds[0], SPEAKER[f"{utt}.partial_embeds"], atol=1e-5, rtol=0)
        torch.testing.assert_close(out.speaker_embeds[0], SPEAKER[f"{utt}.embed_torch"], atol=1e-5, rtol=0)
        torch.testing.assert_close(out.speaker_embeds[0], SPEAKER[f"{utt}.embed_numpy"], atol=1e-5, rtol=0)


def test_embed_speaker_whole_path_and_file(model, processor, tmp_path):
    """4000 zeros + utt0 + 3000 zeros, trimmed like librosa.effects.trim (the original's from-file path)."""
    wav = np.concatenate([np.zeros(4000, np.float32), SPEAKER["utt0.wav"].numpy(), np.zeros(3000, np.float32)])
    expected = SPEAKER["from_file.embed"]
    torch.testing.assert_close(model.embed_speaker(wav, 16000), expected, atol=1e-5, rtol=0)
    sf.write(tmp_path / "voice.wav", wav, 16000, subtype="FLOAT")
    features = processor(text="Hi.", reference_audio=str(tmp_path / "voice.wav"))
    embeds = model.speaker_encoder(features["speaker_features"], features["speaker_features_mask"]).speaker_embeds
    torch.testing.assert_close(embeds[0], expected, atol=1e-5, rtol=0)
    # other rates are resampled to 16 kHz first (librosa.load's soxr HQ): close to the 16 kHz embedding
    upsampled = processor.load_reference((wav, 16000))
    import soxr

    at_24k = soxr.resample(upsampled, 16000, 24000, quality="HQ")
    assert float(torch.dot(model.embed_speaker(at_24k, 24000), expected)) > 0.99


def test_batched_references_of_different_lengths(model, processor):
    waves = [(SPEAKER["utt0.wav"].numpy(), 16000), (SPEAKER["utt1.wav"].numpy(), 16000)]
    batch = processor(text=["One.", "Two words."], reference_audio=waves)
    assert batch["speaker_features"].shape[:2] == batch["speaker_features_mask"].shape
    assert batch["speaker_features_mask"].tolist() == [[1, 1], [1, 0]]
    embeds = model.speaker_encoder(batch["speaker_features"], batch["speaker_features_mask"]).speaker_embeds
    for b, wav in enumerate(waves):
        torch.testing.assert_close(embeds[b], model.embed_speaker(*wav), atol=1e-6, rtol=0)


def test_reference_errors(model, processor):
    from codectts.processing.audio_io import AudioInputError

    with pytest.raises(AudioInputError, match="silent"):
        model.embed_speaker(np.zeros(16000, np.float32), 16000)
    with pytest.raises(AudioInputError, match="after trimming"):
        processor.speaker_features((np.ones(100, np.float32), 16000))
    with pytest.raises(ValueError, match="sampling_rate"):
        processor.speaker_features((SPEAKER["utt0.wav"].numpy(), 0))
    with pytest.raises(ValueError, match="sampling_rate"):
        processor.speaker_features((SPEAKER["utt0.wav"].numpy(), 16000.5))
    with pytest.raises(ValueError, match="pairs"):
        processor(text="Hi.", reference_audio=[SPEAKER["utt0.wav"].numpy()])
    with pytest.raises(AudioInputError, match="NaN"):
        processor.speaker_features((np.full(4000, np.nan, np.float32), 16000))
    with pytest.raises(ValueError, match="partial"):
        model.speaker_encoder(SPEAKER["forward.mels"][:1, None], torch.zeros(1, 1))
