"""``MetaVoiceForTextToSpeech``: speaker encoder + first stage + second stage (+ optional EnCodec) end to end."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from transformers import GenerationMixin, LogitsProcessorList
from transformers.utils import ModelOutput

from ...configuration.metavoice import MetaVoiceConfig
from ..token_selection import select_tokens
from .first_stage import MetaVoiceFirstStageModel, MetaVoicePreTrainedModel
from .guidance import MetaVoiceInterleaveLogitsProcessor
from .second_stage import MetaVoiceSecondStageModel, second_stage_sampling
from .speaker_encoder import MetaVoiceSpeakerEncoder

logger = logging.getLogger(__name__)

__all__ = ["MetaVoiceForTextToSpeech", "MetaVoiceGenerationOutput"]


@dataclass
class MetaVoiceGenerationOutput(ModelOutput):
    """Output of [`MetaVoiceForTextToSpeech.generate`].

    Args:
        audio_codes (`list[torch.LongTensor]`): per item `(num_codebooks=8, frames)` EnCodec codes.
        audio (`list[torch.FloatTensor]`, *optional*): per item `(samples,)` 24 kHz waveform (bundled codec only).
        sequences (`torch.LongTensor` of shape `(batch_size, prompt_length + new)`): first-stage tokens.
        speaker_embeds (`torch.FloatTensor` of shape `(batch_size, speaker_embedding_dim)`): the voices used.
    """

    audio: list[torch.FloatTensor] | None = None
    audio_codes: list[torch.LongTensor] | None = None
    sequences: torch.LongTensor | None = None
    speaker_embeds: torch.FloatTensor | None = None


class MetaVoiceForTextToSpeech(MetaVoicePreTrainedModel, GenerationMixin):
    r"""MetaVoice-1B: text + reference voice -> EnCodec 24 kHz codes (-> waveform with a bundled codec).

    Sub-models: `speaker_encoder` ([`MetaVoiceSpeakerEncoder`]), `first_stage` ([`MetaVoiceFirstStageModel`]),
    `second_stage` ([`MetaVoiceSecondStageModel`]) and, when the folder bundles one, `codec` (transformers'
    `EncodecModel`).
    """

    config_class = MetaVoiceConfig
    main_input_name = "input_ids"
    _no_split_modules = ["MetaVoiceDecoderLayer"]

    def __init__(self, config: MetaVoiceConfig):
        super().__init__(config)
        self.speaker_encoder = MetaVoiceSpeakerEncoder(config.speaker_encoder_config)
        self.first_stage = MetaVoiceFirstStageModel(config.first_stage_config)
        self.second_stage = MetaVoiceSecondStageModel(config.second_stage_config)
        self.codec = None
        if config.codec_config is not None:
            from transformers import EncodecConfig, EncodecModel

            codec_config = {k: v for k, v in dict(config.codec_config).items() if k != "model_type"}
            self.codec = EncodecModel(EncodecConfig(**codec_config))
        self.post_init()

    def get_input_embeddings(self):
        return self.first_stage.get_input_embeddings()

    def forward(self, *args, **kwargs):
        raise NotImplementedError(
            "MetaVoiceForTextToSpeech has no single forward: call model.first_stage(...), model.second_stage(...), "
            "model.speaker_encoder(...) or model.generate(...)"
        )

    # -- speaker -------------------------------------------------------------------------------------------------------

    @torch.no_grad()
    def embed_speaker(self, waveform, sampling_rate: int, trim: bool = True) -> torch.Tensor:
        """One reference voice -> its d-vector ``[speaker_embedding_dim]`` (resampled to 16 kHz like
        ``librosa.load``, silence trimmed, mel partials, mean of the partial embeddings, L2-normalised)."""
        from ...processing.metavoice.speaker_features import SpeakerFeatureSettings, reference_partials

        settings = SpeakerFeatureSettings.from_config(self.config.speaker_encoder_config)
        features = reference_partials((waveform, sampling_rate), settings, trim=trim)
        device = self.speaker_encoder.linear.weight.device
        return self.speaker_encoder(features[None].to(device)).speaker_embeds[0]

    # -- generation ----------------------------------------------------------------------------------------------------

    def _speaker_embeds(self, batch, speaker_embeds, speaker_features, speaker_features_mask, reference_audio):
        given = [x is not None for x in (speaker_embeds, speaker_features, reference_audio)]
        if sum(given) > 1:
            raise ValueError("give the voice once: speaker_embeds, speaker_features or reference_audio")
        device = self.first_stage.embed_tokens.weight.device
        if reference_audio is not None:
            refs = [reference_audio] if isinstance(reference_audio, tuple) else list(reference_audio)
            if len(refs) == 1:
                refs = refs * batch
            if len(refs) != batch:
                raise ValueError(f"got {len(refs)} reference_audio items for {batch} prompts")
            speaker_embeds = torch.stack([self.embed_speaker(*r) for r in refs])
        elif speaker_features is not None:
            speaker_embeds = self.speaker_encoder(speaker_features.to(device), speaker_features_mask).speaker_embeds
        if speaker_embeds is not None:
            if speaker_embeds.ndim == 1:
                speaker_embeds = speaker_embeds[None].expand(batch, -1)
            if speaker_embeds.shape[0] != batch:
                raise ValueError(f"speaker_embeds has {speaker_embeds.shape[0]} rows for {batch} prompts")
            speaker_embeds = speaker_embeds.to(device=device, dtype=self.first_stage.speaker_proj.weight.dtype)
        return speaker_embeds

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        speaker_features: torch.Tensor | None = None,
        speaker_features_mask: torch.Tensor | None = None,
        speaker_embeds: torch.Tensor | None = None,
        reference_audio=None,
        max_new_tokens: int | None = None,
        guidance_scale: float | tuple[float, float] | None = (3.0, 1.0),
        do_sample: bool = True,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = 0.95,
        second_stage_temperature: float = 1.0,
        second_stage_top_k: int | None = 200,
        use_cache: bool = True,
        cache_implementation: str | None = None,
        decode_audio: bool = True,
        generation_config=None,
        streamer=None,
        **kwargs,
    ) -> MetaVoiceGenerationOutput:
        r"""Text prompts (from the processor) + voices -> EnCodec codes (and audio with a bundled codec).

        Args:
            input_ids, attention_mask: processor output (left-padded first-stage prompts).
            speaker_features, speaker_features_mask: processor output for `reference_audio`; or give
                `speaker_embeds [B, D]` directly, or `reference_audio` (`(waveform, rate)` or a list of them).
            max_new_tokens (`int`, *optional*): first-stage tokens per item (2 per 75 Hz frame); `None` = up to the
                first stage's context (2048 tokens in the release: about 13 s minus the text).
            guidance_scale: `(g_spk, g_prompt)` or a float; `None` = off (default `(3.0, 1.0)` as the original).
            do_sample, temperature, top_k, top_p: first-stage sampling (`do_sample=False` = greedy, both stages).
            second_stage_temperature, second_stage_top_k: second-stage sampling.
            use_cache, cache_implementation: first-stage KV cache (`"static"` for compiled decoding).
            decode_audio (`bool`): run the bundled codec (if any).

        The first stage is constrained to the interleaved grammar (codebook 0 / end-of-audio at even steps,
        codebook 1 at odd ones) and codebooks 2..7 are read by position (see `processing.metavoice.adapters`).
        """
        for name in ("return_dict_in_generate", "output_scores", "num_return_sequences"):
            kwargs.pop(name, None)
        if kwargs:
            raise TypeError(f"unexpected generate arguments: {sorted(kwargs)}")
        if max_new_tokens is None and generation_config is not None:
            max_new_tokens = getattr(generation_config, "max_new_tokens", None)
        if input_ids is None or input_ids.ndim != 2:
            raise ValueError("input_ids must be [batch_size, prompt_length] (use the processor)")
        fs_config, ss_config = self.config.first_stage_config, self.config.second_stage_config
        device = self.first_stage.embed_tokens.weight.device
        input_ids = input_ids.to(device)
        batch, prompt_length = input_ids.shape
        attention_mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask.to(device)
        speaker_embeds = self._speaker_embeds(
            batch, speaker_embeds, speaker_features, speaker_features_mask, reference_audio
        )
        if guidance_scale is not None and speaker_embeds is None:
            raise ValueError(
                "guidance_scale needs a voice: pass reference_audio to the processor (or generate), or set "
                "guidance_scale=None"
            )
        grammar = MetaVoiceInterleaveLogitsProcessor(
            prompt_length, fs_config.codebook_size, fs_config.end_of_audio_token_id
        )
        sampling = {"do_sample": bool(do_sample)}
        if do_sample:
            sampling.update(temperature=temperature, top_k=top_k, top_p=top_p)
        sequences = self.first_stage.generate(
            input_ids,
            attention_mask,
            speaker_embeds=speaker_embeds,
            guidance_scale=guidance_scale,
            max_new_tokens=max_new_tokens,
            use_cache=use_cache,
            cache_implementation=cache_implementation,
            logits_processor=LogitsProcessorList([grammar]),
            streamer=streamer,
            **sampling,
        )

        # first-stage frames by position; second-stage input rows
        cs, pad = fs_config.codebook_size, ss_config.pad_token_id
        text_shift = fs_config.text_offset - ss_config.text_offset
        block = ss_config.block_size
        rows = torch.full((batch, 2, block), pad, dtype=torch.long, device=device)
        spans = []
        for b in range(batch):
            text = input_ids[b][attention_mask[b].bool()] - text_shift
            new = sequences[b, prompt_length:]
            end = (new == fs_config.end_of_audio_token_id).nonzero()
            new = new[: int(end[0, 0])] if end.numel() else new
            frames = new.shape[0] // 2
            room = block - text.shape[0] - 1
            if frames > room:
                logger.warning("item %d: %d frames exceed the second stage's block; keeping %d", b, frames, room)
                frames = max(room, 0)
            c0, c1 = new[0 : 2 * frames : 2], new[1 : 2 * frames : 2] - cs
            length = text.shape[0]
            rows[b, 0, :length] = text
            rows[b, 0, length : length + frames] = c0
            rows[b, 1, length : length + frames] = c1
            spans.append((length, frames, c0, c1))
        fine = self._second_stage_generate(
            rows, speaker_embeds, do_sample, second_stage_temperature, second_stage_top_k
        )
        audio_codes = []
        for b, (length, frames, c0, c1) in enumerate(spans):
            audio_codes.append(torch.cat([c0[None], c1[None], fine[b, :, length : length + frames]], dim=0))
        audio = self.decode_audio_codes(audio_codes) if decode_audio and self.codec is not None else None
        return MetaVoiceGenerationOutput(
            audio=audio, audio_codes=audio_codes, sequences=sequences, speaker_embeds=speaker_embeds
        )

    def _second_stage_generate(self, rows, speaker_embeds, do_sample, temperature, top_k):
        logits = torch.stack(self.second_stage(rows, speaker_embeds=speaker_embeds).logits, dim=1).float()
        # the pad class means "no audio here": never a code at an audio position
        logits[..., self.config.second_stage_config.pad_token_id :] = float("-inf")
        return select_tokens(logits, second_stage_sampling(do_sample, temperature, top_k))

    @torch.no_grad()
    def decode_audio_codes(self, audio_codes: list[torch.Tensor]) -> list[torch.Tensor]:
        """EnCodec-decode ``[num_codebooks, frames]`` codes per item -> float32 ``[samples]`` waveforms."""
        if self.codec is None:
            raise ValueError("this model has no bundled codec (convert with --codec ENCODEC_DIR)")
        hop = int(np.prod(self.codec.config.upsampling_ratios))
        device = next(self.codec.parameters()).device
        waveforms = []
        for codes in audio_codes:
            if codes.shape[-1] == 0:
                waveforms.append(torch.zeros(0))
                continue
            values = self.codec.decode(codes[None, None].to(device), [None], return_dict=True).audio_values
            waveforms.append(values[0, 0, : codes.shape[-1] * hop].float().cpu())
        return waveforms
