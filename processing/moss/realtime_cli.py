"""``codectts realtime``: speak text piped in line by line (e.g. from an LLM) with a MOSS-TTS-Realtime bundle.

Every stdin line is pushed into a streaming session as soon as it arrives; the frames it produces go through the
codec's streaming decoder and are appended to the output WAV, so audio is ready while text is still coming in. The
file is written as ``.NAME.partial`` next to the target and renamed when the stream ends (never a half-written WAV
under the final name). Time to first audio (from the first text line) is printed on stderr.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

__all__ = ["run_realtime"]


def run_realtime(
    model_dir: str | Path,
    output: str | Path,
    lines=None,
    *,
    greedy: bool = False,
    max_frames: int | None = None,
    seed: int | None = None,
    chunk_frames: int = 1,
    voice_codes: str | Path | None = None,
    log=None,
) -> Path:
    """Stream ``lines`` (default: stdin) through the model in ``model_dir`` into the WAV file ``output``."""
    import soundfile as sf
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModel, AutoProcessor

    log = log or sys.stderr
    lines = sys.stdin if lines is None else lines
    output = Path(output)
    model = AutoModel.from_pretrained(model_dir).eval()
    processor = AutoProcessor.from_pretrained(model_dir)
    if getattr(processor, "audio_tokenizer", None) is None:
        raise ValueError(f"{model_dir} has no audio_tokenizer/ (convert with --audio-tokenizer to get audio out)")
    voice = None
    if voice_codes is not None:
        voice = load_file(str(voice_codes)).get("audio_codes")
        if voice is None:
            raise ValueError(f"{voice_codes} must hold an 'audio_codes' tensor [T, 16]")
    kwargs = {}
    if greedy:
        kwargs.update(do_sample=False)
    if max_frames is not None:
        kwargs["max_frames"] = max_frames
    generator = torch.Generator(device=model.device).manual_seed(seed) if seed is not None else None
    session = model.start_session(processor, voice_codes=voice, generator=generator, **kwargs)
    stream = processor.stream_waveform(chunk_frames=chunk_frames)

    partial = output.with_name(f".{output.name}.partial")
    output.parent.mkdir(parents=True, exist_ok=True)
    started = first_audio = None
    samples = 0
    try:
        with sf.SoundFile(partial, "w", samplerate=processor.sampling_rate, channels=1, format="WAV") as wav:

            def write(audio) -> None:
                nonlocal first_audio, samples
                if audio.numel() == 0:
                    return
                if first_audio is None:
                    first_audio = time.perf_counter()
                    print(f"first audio after {1000 * (first_audio - started):.0f} ms", file=log, flush=True)
                wav.write(audio.numpy())
                wav.flush()
                samples += audio.numel()

            for line in lines:
                if started is None:
                    started = time.perf_counter()
                if line:
                    write(stream.push(session.push_text(line)))
            if started is None:
                raise ValueError("no text on the input: pipe the text to speak into `codectts realtime`")
            write(stream.push(session.end_text()))
            write(stream.flush())
        partial.replace(output)
    finally:
        partial.unlink(missing_ok=True)
    seconds = samples / processor.sampling_rate
    elapsed = time.perf_counter() - started
    print(f"wrote {seconds:.2f} s of audio to {output} in {elapsed:.2f} s", file=log, flush=True)
    return output
