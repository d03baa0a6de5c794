"""Causal-transformer audio tokenizer (codec), compatible with MOSS-Audio-Tokenizer checkpoints.

24 kHz mono audio -> ``num_quantizers`` streams of discrete codes at ``frame_rate`` (12.5 Hz) -> audio. Encoder and
decoder are stacks of patchify reshapes and causal sliding-window transformers; between them a residual quantizer
with cosine code search. Everything is causal, so the model streams with explicit state (see ``encode``/``decode``
with ``use_cache=True`` / ``streaming_state``), and streaming equals offline processing.

Deliberate differences from the original implementation (all shapes follow transformers' Mimi/DAC conventions):

* Codes are batch-first ``(batch, num_quantizers, frames)``; the original returns ``(num_quantizers, batch, frames)``.
* A partial last frame counts: ``audio_codes_lengths = ceil(samples / downsample_rate)`` and that frame is encoded
  from the zero-padded audio. The original floors the length and gives that frame content-independent codes.
  Frames fully inside the input are identical.
* Audio past ``padding_mask`` is zeroed before encoding (the partial frame then equals the single-item encoding),
  and decoded audio past ``audio_values_lengths`` is zeroed.
* Code positions past ``audio_codes_lengths`` are ignored (any value, e.g. a pad id, is accepted there).
* Streaming keeps an exact sliding window (see ``codec_streaming``); it supports batches and any whole-frame chunk.
* Attention is computed block-wise (or with flash-attention's window), never with a dense ``T x T`` mask.
* Bad input (wrong rank, empty or non-finite audio, out-of-range codes, too many quantizers, ``num_quantizers=0``,
  a wrong ``sampling_rate``) raises ``ValueError``/``TypeError`` instead of failing later or being ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import initialization as init
from transformers.modeling_utils import PreTrainedAudioTokenizerBase
from transformers.utils import ModelOutput

from ...configuration.moss.audio_tokenizer import CodecTTSAudioTokenizerConfig
from .codec_quantizer import CodecResidualQuantizer
from .codec_streaming import CodecStreamingState
from .codec_transformer import CodecLayerScale, CodecStack


@dataclass
class CodecTTSAudioTokenizerEncoderOutput(ModelOutput):
    """Output of [`CodecTTSAudioTokenizerModel.encode`].

    Args:
        audio_codes (`torch.LongTensor` of shape `(batch, num_quantizers, frames)`): discrete codes.
        audio_codes_lengths (`torch.LongTensor` of shape `(batch,)`): valid frames per row,
            ``ceil(valid samples / downsample_rate)``.
        encoder_hidden_states (`torch.FloatTensor` of shape `(batch, frames, hidden)`): encoder output (the
            quantizer's input), in the model dtype.
        streaming_state (`CodecStreamingState`, *optional*): updated streaming state (streaming calls only); also
            readable as ``past_key_values`` (its former name).
    """

    audio_codes: torch.LongTensor | None = None
    audio_codes_lengths: torch.LongTensor | None = None
    encoder_hidden_states: torch.FloatTensor | None = None
    streaming_state: CodecStreamingState | None = None

    @property
    def past_key_values(self) -> CodecStreamingState | None:
        return self.streaming_state


@dataclass
class CodecTTSAudioTokenizerDecoderOutput(ModelOutput):
    """Output of [`CodecTTSAudioTokenizerModel.decode`].

    Args:
        audio_values (`torch.FloatTensor` of shape `(batch, 1, frames * downsample_rate)`): float32 waveform,
            zero past each row's length.
        audio_values_lengths (`torch.LongTensor` of shape `(batch,)`): valid samples per row.
        streaming_state (`CodecStreamingState`, *optional*): updated streaming state (streaming calls only); also
            readable as ``past_key_values`` (its former name).
    """

    audio_values: torch.FloatTensor | None = None
    audio_values_lengths: torch.LongTensor | None = None
    streaming_state: CodecStreamingState | None = None

    @property
    def past_key_values(self) -> CodecStreamingState | None:
        return self.streaming_state


@dataclass
class CodecTTSAudioTokenizerOutput(ModelOutput):
    """Output of [`CodecTTSAudioTokenizerModel.forward`] (encode then decode, or decode only).

    Args:
        audio_codes (`torch.LongTensor` of shape `(batch, num_quantizers, frames)`): the encoded (or given) codes.
        audio_codes_lengths (`torch.LongTensor` of shape `(batch,)`, *optional*): valid frames per row.
        audio_values (`torch.FloatTensor` of shape `(batch, 1, frames * downsample_rate)`): decoded float32 waveform.
        audio_values_lengths (`torch.LongTensor` of shape `(batch,)`): valid samples per row.
    """

    audio_codes: torch.LongTensor | None = None
    audio_codes_lengths: torch.LongTensor | None = None
    audio_values: torch.FloatTensor | None = None
    audio_values_lengths: torch.LongTensor | None = None


class CodecTTSAudioTokenizerPreTrainedModel(PreTrainedAudioTokenizerBase):
    config_class = CodecTTSAudioTokenizerConfig
    config: CodecTTSAudioTokenizerConfig
    base_model_prefix = "audio_tokenizer"
    main_input_name = "input_values"
    _no_split_modules = ["CodecTransformerLayer"]
    # Code search must stay float32 (near-tie codes flip in bf16); the rest may run in bf16/fp16.
    _keep_in_fp32_modules_strict = ["quantizer"]

    @torch.no_grad()
    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            init.normal_(module.weight, mean=0.0, std=self.config.initializer_range)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=1.0)
        elif isinstance(module, CodecLayerScale):
            init.constant_(module.scale, self.config.layer_scale_initial_scale)


class CodecTTSAudioTokenizerModel(CodecTTSAudioTokenizerPreTrainedModel):
    """Audio tokenizer: ``encode`` (waveform -> codes), ``decode`` (codes -> waveform), ``forward`` (both).

    Example:

    ```python
    >>> model = CodecTTSAudioTokenizerModel(CodecTTSAudioTokenizerConfig.tiny()).eval()
    >>> wav = torch.randn(2, 1, 24000)
    >>> enc = model.encode(wav)                                     # codes (2, 32, 13)
    >>> audio = model.decode(enc.audio_codes[:, :8], enc.audio_codes_lengths).audio_values  # (2, 1, 24960)
    >>> # streaming decode, chunk by chunk, explicit state
    >>> state = model.init_streaming_state("decoder", batch_size=2)
    >>> parts = [model.decode(c, streaming_state=state).audio_values for c in enc.audio_codes.split(4, dim=-1)]
    ```
    """

    def __init__(self, config: CodecTTSAudioTokenizerConfig):
        super().__init__(config)
        self.encoder = CodecStack(config.encoder_stages, config.stage_windows("encoder"), fold=True, config=config)
        self.quantizer = CodecResidualQuantizer(config)
        self.decoder = CodecStack(config.decoder_stages, config.stage_windows("decoder"), fold=False, config=config)
        self.post_init()

    @property
    def sampling_rate(self) -> int:
        return self.config.sampling_rate

    def init_streaming_state(self, part: str, batch_size: int) -> CodecStreamingState:
        """A fresh streaming state for ``part`` ("encoder" or "decoder") and ``batch_size`` parallel streams."""
        return CodecStreamingState(part, batch_size)

    # ------------------------------------------------------------------ encode
    def encode(
        self,
        input_values: torch.Tensor,
        padding_mask: torch.Tensor | None = None,
        num_quantizers: int | None = None,
        sampling_rate: int | None = None,
        streaming_state: CodecStreamingState | None = None,
        use_cache: bool | None = None,
        past_key_values: CodecStreamingState | None = None,
        return_dict: bool | None = None,
    ) -> CodecTTSAudioTokenizerEncoderOutput | tuple:
        """Encode waveforms into codes.

        Args:
            input_values (`torch.FloatTensor` of shape `(batch, 1, samples)` or `(batch, samples)`): mono audio at
                ``config.sampling_rate``. Right-padded to whole frames with zeros internally.
            padding_mask (`torch.Tensor` of shape `(batch, samples)`, *optional*): 1/True for real samples
                (right padding only). Audio past it is treated as zeros.
            num_quantizers (`int`, *optional*): how many quantizer stages to use (1..``config.num_quantizers``,
                default all). Codes of a K-stage encode are the first K rows of a full encode.
            sampling_rate (`int`, *optional*): sample rate of ``input_values``; checked against the config.
            streaming_state (`CodecStreamingState`, *optional*): encoder streaming state from a previous call; the
                input then continues that stream. Chunks must hold whole frames, except the last one of a stream.
            use_cache (`bool`, *optional*): start a new stream (returns ``streaming_state``) when no state is given.
            return_dict (`bool`, *optional*): return a [`CodecTTSAudioTokenizerEncoderOutput`] (default) or the
                tuple ``(audio_codes, audio_codes_lengths)`` (plus the state when streaming).
            past_key_values: the former name of ``streaming_state`` (still accepted).

        Returns:
            ``audio_codes`` `(batch, K, frames)` int64 with ``frames = ceil(samples / downsample_rate)``,
            ``audio_codes_lengths`` `(batch,)`, ``encoder_hidden_states`` `(batch, frames, hidden)`.
        """
        return_dict = self.config.return_dict if return_dict is None else return_dict
        if sampling_rate is not None and sampling_rate != self.config.sampling_rate:
            raise ValueError(
                f"input audio is sampled at {sampling_rate} Hz but the model expects {self.config.sampling_rate} Hz; "
                "resample it first"
            )
        num_quantizers = self._check_num_quantizers(num_quantizers)
        audio = self._check_audio(input_values)
        batch, samples = audio.shape
        hop = self.config.downsample_rate

        state = _streaming_state(streaming_state, past_key_values)
        if state is None and use_cache:
            state = self.init_streaming_state("encoder", batch)
        if state is not None:
            self._check_state(state, "encoder", batch)
            if padding_mask is not None:
                raise ValueError("padding_mask is not supported when streaming: all streams advance together")
            if state.finished:
                raise ValueError("this encoder stream already ended with a partial frame and cannot continue")
            lengths = torch.full((batch,), samples, dtype=torch.long, device=audio.device)
        else:
            lengths = self._lengths_from_padding_mask(padding_mask, batch, samples, audio.device)
            if padding_mask is not None:  # padded samples count as silence (whatever the caller put there)
                audio = audio.masked_fill(~padding_mask.to(device=audio.device, dtype=torch.bool), 0.0)
        if not torch.isfinite(audio).all():
            raise ValueError("input_values contains NaN or infinite samples")

        frames = -(-samples // hop)
        if frames * hop != samples:
            audio = nn.functional.pad(audio, (0, frames * hop - samples))
            if state is not None:
                state.finished = True
        dtype = self._transformer_dtype(self.encoder)
        hidden = self.encoder(audio.to(dtype)[..., None], state=state)  # (batch, frames, channels)
        codes_lengths = -(-lengths // hop)
        frame_mask = torch.arange(frames, device=audio.device)[None, :] < codes_lengths[:, None]
        codes = self.quantizer.encode(hidden, frame_mask, num_quantizers)
        if state is not None:
            state.num_frames += frames
        if not return_dict:
            return (codes, codes_lengths) if state is None else (codes, codes_lengths, state)
        return CodecTTSAudioTokenizerEncoderOutput(
            audio_codes=codes, audio_codes_lengths=codes_lengths, encoder_hidden_states=hidden, streaming_state=state
        )

    # ------------------------------------------------------------------ decode
    def decode(
        self,
        audio_codes: torch.Tensor,
        audio_codes_lengths: torch.Tensor | None = None,
        num_quantizers: int | None = None,
        streaming_state: CodecStreamingState | None = None,
        use_cache: bool | None = None,
        return_dict: bool | None = None,
        past_key_values: CodecStreamingState | None = None,
    ) -> CodecTTSAudioTokenizerDecoderOutput | tuple:
        """Decode codes into waveforms.

        Args:
            audio_codes (`torch.LongTensor` of shape `(batch, K, frames)` or `(K, frames)`): codes of the first K
                quantizer stages (any ``1 <= K <= config.num_quantizers``).
            audio_codes_lengths (`torch.LongTensor` of shape `(batch,)`, *optional*): valid frames per row (default
                all). Positions past it are ignored and their audio is zeroed.
            num_quantizers (`int`, *optional*): decode only the first ``num_quantizers`` rows of ``audio_codes``.
            streaming_state (`CodecStreamingState`, *optional*): decoder streaming state; the codes continue that
                stream (e.g. frames as a generator produces them).
            use_cache (`bool`, *optional*): start a new stream (returns ``streaming_state``) when no state is given.
            return_dict (`bool`, *optional*): return a [`CodecTTSAudioTokenizerDecoderOutput`] (default) or the
                tuple ``(audio_values, audio_values_lengths)`` (plus the state when streaming).
            past_key_values: the former name of ``streaming_state`` (still accepted).

        Returns:
            ``audio_values`` `(batch, 1, frames * downsample_rate)` float32, ``audio_values_lengths`` `(batch,)`.
        """
        return_dict = self.config.return_dict if return_dict is None else return_dict
        codes = self._check_codes(audio_codes, num_quantizers)
        batch, _, frames = codes.shape
        hop = self.config.downsample_rate

        state = _streaming_state(streaming_state, past_key_values)
        if state is None and use_cache:
            state = self.init_streaming_state("decoder", batch)
        if state is not None:
            self._check_state(state, "decoder", batch)
        if audio_codes_lengths is None:
            lengths = torch.full((batch,), frames, dtype=torch.long, device=codes.device)
        else:
            lengths = self._check_lengths(audio_codes_lengths, batch, frames, codes.device, "audio_codes_lengths")
        valid = torch.arange(frames, device=codes.device)[None, None, :] < lengths[:, None, None]
        self._check_code_values(codes, valid)
        codes = torch.where(valid, codes, torch.zeros((), dtype=codes.dtype, device=codes.device))

        latents = self.quantizer.decode(codes)
        dtype = self._transformer_dtype(self.decoder)
        audio = self.decoder(latents.to(dtype), state=state)[..., 0].float()  # (batch, samples)
        if state is not None:
            state.num_frames += frames
        # Zero the audio of frames past each row's length (frame-wise, no per-sample index tensor).
        audio = audio.reshape(batch, frames, hop).masked_fill_(~valid[:, 0, :, None], 0.0).view(batch, 1, frames * hop)
        audio_lengths = lengths * hop
        if not return_dict:
            return (audio, audio_lengths) if state is None else (audio, audio_lengths, state)
        return CodecTTSAudioTokenizerDecoderOutput(
            audio_values=audio, audio_values_lengths=audio_lengths, streaming_state=state
        )

    def forward(
        self,
        input_values: torch.Tensor | None = None,
        padding_mask: torch.Tensor | None = None,
        audio_codes: torch.Tensor | None = None,
        audio_codes_lengths: torch.Tensor | None = None,
        num_quantizers: int | None = None,
        return_dict: bool | None = None,
    ) -> CodecTTSAudioTokenizerOutput | tuple:
        """Encode ``input_values`` then decode the codes (reconstruction), or decode ``audio_codes`` alone.

        Returns a [`CodecTTSAudioTokenizerOutput`] or the tuple
        ``(audio_codes, audio_codes_lengths, audio_values, audio_values_lengths)``.
        """
        return_dict = self.config.return_dict if return_dict is None else return_dict
        if (input_values is None) == (audio_codes is None):
            raise ValueError("pass exactly one of input_values (to encode and decode) or audio_codes (to decode)")
        if input_values is not None:
            audio_codes, audio_codes_lengths = self.encode(
                input_values, padding_mask=padding_mask, num_quantizers=num_quantizers, return_dict=False
            )
            num_quantizers = None
        audio_values, audio_values_lengths = self.decode(
            audio_codes, audio_codes_lengths, num_quantizers=num_quantizers, return_dict=False
        )
        if not return_dict:
            return (audio_codes, audio_codes_lengths, audio_values, audio_values_lengths)
        return CodecTTSAudioTokenizerOutput(
            audio_codes=audio_codes,
            audio_codes_lengths=audio_codes_lengths,
            audio_values=audio_values,
            audio_values_lengths=audio_values_lengths,
        )

    # ------------------------------------------------------------------ input checks
    @staticmethod
    def _transformer_dtype(stack: nn.Module) -> torch.dtype:
        return next(stack.parameters()).dtype

    def _check_num_quantizers(self, num_quantizers: int | None) -> int:
        total = self.config.num_quantizers
        if num_quantizers is None:
            return total
        if isinstance(num_quantizers, bool) or not isinstance(num_quantizers, int):
            raise TypeError(f"num_quantizers must be an int, got {type(num_quantizers).__name__}")
        if not 1 <= num_quantizers <= total:
            raise ValueError(f"num_quantizers must be between 1 and {total}, got {num_quantizers}")
        return num_quantizers

    @staticmethod
    def _check_audio(input_values: torch.Tensor) -> torch.Tensor:
        if not isinstance(input_values, torch.Tensor):
            raise TypeError(f"input_values must be a torch.Tensor, got {type(input_values).__name__}")
        if not input_values.is_floating_point():
            raise TypeError(f"input_values must be a floating point tensor, got {input_values.dtype}")
        if input_values.dim() == 3:
            if input_values.shape[1] != 1:
                raise ValueError(f"input_values must be mono (batch, 1, samples); got {input_values.shape[1]} channels")
            input_values = input_values[:, 0]
        elif input_values.dim() != 2:
            raise ValueError(
                f"input_values must have shape (batch, 1, samples) or (batch, samples), got {tuple(input_values.shape)}"
            )
        if input_values.shape[0] == 0 or input_values.shape[1] == 0:
            raise ValueError(f"input_values is empty (shape {tuple(input_values.shape)})")
        return input_values

    def _lengths_from_padding_mask(self, padding_mask, batch: int, samples: int, device) -> torch.Tensor:
        if padding_mask is None:
            return torch.full((batch,), samples, dtype=torch.long, device=device)
        if tuple(padding_mask.shape) != (batch, samples):
            raise ValueError(
                f"padding_mask must have shape (batch, samples) = {(batch, samples)}, got {tuple(padding_mask.shape)}"
            )
        mask = padding_mask.to(device=device).bool()
        lengths = mask.sum(-1)
        if (mask[:, 1:] & ~mask[:, :-1]).any():  # a valid sample after a padded one
            raise ValueError("padding_mask must mark a prefix of each row (right padding only)")
        if (lengths == 0).any():
            raise ValueError(f"rows {lengths.eq(0).nonzero().flatten().tolist()} of the batch contain no audio")
        return lengths.long()

    @staticmethod
    def _check_lengths(lengths, batch: int, frames: int, device, name: str) -> torch.Tensor:
        lengths = torch.as_tensor(lengths, device=device)
        if lengths.dtype.is_floating_point or lengths.dtype == torch.bool:
            raise TypeError(f"{name} must be an integer tensor, got {lengths.dtype}")
        if tuple(lengths.shape) != (batch,):
            raise ValueError(f"{name} must have shape ({batch},), got {tuple(lengths.shape)}")
        if ((lengths < 0) | (lengths > frames)).any():
            raise ValueError(f"{name} must be between 0 and {frames}, got {lengths.tolist()}")
        return lengths.long()

    def _check_codes(self, audio_codes: torch.Tensor, num_quantizers: int | None) -> torch.Tensor:
        if not isinstance(audio_codes, torch.Tensor):
            raise TypeError(f"audio_codes must be a torch.Tensor, got {type(audio_codes).__name__}")
        if audio_codes.is_floating_point() or audio_codes.is_complex() or audio_codes.dtype == torch.bool:
            raise TypeError(f"audio_codes must be an integer tensor, got {audio_codes.dtype}")
        if audio_codes.dim() == 2:
            audio_codes = audio_codes[None]
        elif audio_codes.dim() != 3:
            raise ValueError(
                f"audio_codes must have shape (batch, num_quantizers, frames) or (num_quantizers, frames), "
                f"got {tuple(audio_codes.shape)}"
            )
        batch, available, frames = audio_codes.shape
        if batch == 0 or frames == 0:
            raise ValueError(f"audio_codes is empty (shape {tuple(audio_codes.shape)})")
        if not 1 <= available <= self.config.num_quantizers:
            raise ValueError(
                f"audio_codes has {available} quantizer rows (dim 1) but the model has {self.config.num_quantizers}; "
                "codes must be (batch, num_quantizers, frames)"
            )
        if num_quantizers is not None:
            num_quantizers = self._check_num_quantizers(num_quantizers)
            if num_quantizers > available:
                raise ValueError(f"num_quantizers={num_quantizers} but audio_codes only has {available} rows")
            audio_codes = audio_codes[:, :num_quantizers]
        return audio_codes.long()

    def _check_code_values(self, codes: torch.Tensor, valid: torch.Tensor) -> None:
        size = self.config.codebook_size
        bad = valid & ((codes < 0) | (codes >= size))
        if bad.any():
            b, k, f = bad.nonzero()[0].tolist()
            raise ValueError(
                f"audio_codes must be in [0, {size}); found {codes[b, k, f].item()} at (batch {b}, quantizer {k}, "
                f"frame {f})"
            )

    @staticmethod
    def _check_state(state: CodecStreamingState, part: str, batch: int) -> None:
        if not isinstance(state, CodecStreamingState):
            raise TypeError(f"streaming_state must be a CodecStreamingState, got {type(state).__name__}")
        if state.part != part:
            raise ValueError(f"streaming_state is a {state.part} state; {part} needs its own state")
        if state.batch_size != batch:
            raise ValueError(f"streaming_state was created for batch size {state.batch_size}, got {batch}")


def _streaming_state(streaming_state, past_key_values):
    if streaming_state is not None and past_key_values is not None and streaming_state is not past_key_values:
        raise ValueError("got both streaming_state= and past_key_values= (its former name); pass only streaming_state=")
    return streaming_state if streaming_state is not None else past_key_values


__all__ = [
    "CodecTTSAudioTokenizerDecoderOutput",
    "CodecTTSAudioTokenizerEncoderOutput",
    "CodecTTSAudioTokenizerModel",
    "CodecTTSAudioTokenizerOutput",
    "CodecTTSAudioTokenizerPreTrainedModel",
]
