"""Training data for the Delay and Local generators: records -> token rows + labels, and a padding collator.

A *record* is one utterance to learn::

    {"text": "Hello there.",                         # the text spoken in the target audio (required)
     "audio": "clips/0001.wav",                       # the target speech ... (path, (array, rate), {"array", "sampling_rate"})
     "codes": [[...], ...],                           # ... or its codes [frames, n_vq] (exactly one of audio / codes)
     "reference": "voices/alice.wav",                 # optional voice prompt(s): an item or a list (one per speaker [S1],
                                                      #   [S2], ...; None keeps the numbering); {"codes": [...]} for codes
     "language": "English", "instruction": ..., "tokens": ..., "quality": ..., "sound_event": ..., "ambient_sound": ...}

The rows are laid out exactly as the original fine-tuning code (``finetuning/dataset.py``, identical for Delay and Local)
lays them out: with ``prompt = processor([[user]], mode="generation")`` (``P`` rows) and
``full = processor([[user, assistant(target codes)]], mode="computing_loss")``,

* ``input_ids = full[:-1]`` and ``labels = full[1:]`` (labels already shifted: ``labels[t]`` is the row after ``t``);
* labels before the first answer row are ``-100`` (``t < P - 1``: the prompt is never supervised), and so is every
  audio label equal to the pad code (the pad is an input-only symbol).

So Delay learns ``<|audio_start|>``, the gen/delay slots with their (delayed) codes, ``<|audio_end|>``, ``<|im_end|>`` and
the final newline; Local, whose prompt already opens the audio block, learns the gen slots with their codes,
``<|audio_end|>``, ``<|im_end|>`` and the newline.

Audio is encoded once: :func:`prepare_training_examples` encodes every waveform of a batch of records (targets and
references) in ONE codec call and returns rows that hold the codes, so an epoch never touches the codec again.
:func:`training_map_function` wraps it for ``datasets.Dataset.map(..., batched=True)`` (the result is cached by
``datasets`` like any other map). :class:`CodecTTSDataCollator` pads examples into batches for ``transformers.Trainer``.
"""

from __future__ import annotations

import logging
import numbers
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100
# Template fields of the user turn a record may set (besides "text" and "reference").
RECORD_TEMPLATE_FIELDS = ("instruction", "tokens", "quality", "sound_event", "ambient_sound", "language")
RECORD_FIELDS = ("text", "audio", "codes", "reference", "sampling_rate", *RECORD_TEMPLATE_FIELDS)

__all__ = [
    "IGNORE_INDEX",
    "RECORD_FIELDS",
    "CodecTTSDataCollator",
    "build_training_example",
    "prepare_training_examples",
    "training_map_function",
]


class TrainingRecordError(ValueError):
    """A training record is malformed (the message names the record and the field)."""


# ---------------------------------------------------------------------------------------------------------------------
# records -> audio items
# ---------------------------------------------------------------------------------------------------------------------


def _as_codes(value: Any, where: str) -> torch.Tensor:
    codes = torch.as_tensor(np.asarray(value)) if not isinstance(value, torch.Tensor) else value
    if codes.is_floating_point() or codes.dtype == torch.bool:
        raise TrainingRecordError(f"{where}: codes must be integers [frames, n_vq], got dtype {codes.dtype}")
    if codes.dim() != 2:
        raise TrainingRecordError(f"{where}: codes must be a [frames, n_vq] matrix, got shape {tuple(codes.shape)}")
    return codes.long()


def _audio_item(value: Any, where: str, base_dir: Path | None, sampling_rate: int | None) -> tuple[str, Any]:
    """One audio item -> ``("codes", LongTensor [frames, n_vq])`` or ``("audio", item for encode_audio)``."""
    if isinstance(value, (str, os.PathLike)):
        path = Path(value)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        if not path.is_file():
            raise TrainingRecordError(f"{where}: audio file {str(path)!r} does not exist")
        return "audio", str(path)
    if isinstance(value, Mapping):  # {"codes": ...} or a datasets Audio value {"array", "sampling_rate", "path"}
        if value.get("codes") is not None:
            return "codes", _as_codes(value["codes"], where)
        if value.get("array") is not None:
            rate = value.get("sampling_rate", sampling_rate)
            if rate is None:
                raise TrainingRecordError(f"{where}: an audio array needs its 'sampling_rate'")
            return "audio", (np.asarray(value["array"], dtype=np.float32), int(rate))
        if value.get("path") is not None:
            return _audio_item(value["path"], where, base_dir, sampling_rate)
        raise TrainingRecordError(f"{where}: expected {{'codes': ...}}, {{'array', 'sampling_rate'}} or {{'path'}}")
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], numbers.Integral):
        return "audio", (np.asarray(value[0], dtype=np.float32), int(value[1]))
    if isinstance(value, (torch.Tensor, np.ndarray)):
        array = torch.as_tensor(value)
        if not array.is_floating_point():
            return "codes", _as_codes(array, where)
        if sampling_rate is None:
            raise TrainingRecordError(
                f"{where}: a waveform array needs the record's 'sampling_rate' (or pass (array, rate))"
            )
        return "audio", (array.float().numpy(), int(sampling_rate))
    raise TrainingRecordError(
        f"{where}: unsupported audio item of type {type(value).__name__}; use a path, (array, rate), "
        "{'array': ..., 'sampling_rate': ...} or {'codes': [[...], ...]}"
    )


@dataclass
class _ParsedRecord:
    fields: dict[str, Any]  # user template fields (text, instruction, ...)
    target: tuple[str, Any]
    references: list[tuple[str, Any] | None] | None


_warned_unknown: set[str] = set()


def _parse_record(record: Mapping, index: int, base_dir: Path | None) -> _ParsedRecord:
    where = f"record {index}"
    if not isinstance(record, Mapping):
        raise TrainingRecordError(f"{where}: a record must be a dict, got {type(record).__name__}")
    unknown = sorted(set(record) - set(RECORD_FIELDS) - _warned_unknown)
    if unknown:  # e.g. an "id" column of a dataset: ignored, said once
        _warned_unknown.update(unknown)
        logger.warning("training records: ignoring unknown field(s) %s (known: %s)", unknown, RECORD_FIELDS)
    text = record.get("text")
    if not isinstance(text, str) or not text.strip():
        raise TrainingRecordError(f"{where}: 'text' (the transcript of the target audio) must be a non-empty string")
    has_audio, has_codes = record.get("audio") is not None, record.get("codes") is not None
    if has_audio == has_codes:
        raise TrainingRecordError(f"{where}: give exactly one of 'audio' (the target speech) or 'codes' (its codes)")
    rate = record.get("sampling_rate")
    target = (
        ("codes", _as_codes(record["codes"], f"{where} 'codes'"))
        if has_codes
        else _audio_item(record["audio"], f"{where} 'audio'", base_dir, rate)
    )
    if target[0] == "codes" and target[1].shape[0] == 0:
        raise TrainingRecordError(f"{where}: the target has no frames")
    references = record.get("reference")
    if references is not None:
        if not isinstance(references, list):
            references = [references]
        references = [
            None if item is None else _audio_item(item, f"{where} 'reference'[{i}]", base_dir, rate)
            for i, item in enumerate(references)
        ]
    fields = {"text": text, **{k: record[k] for k in RECORD_TEMPLATE_FIELDS if record.get(k) is not None}}
    return _ParsedRecord(fields=fields, target=target, references=references)


# ---------------------------------------------------------------------------------------------------------------------
# rows + labels
# ---------------------------------------------------------------------------------------------------------------------


def build_training_example(
    processor, target_codes: torch.Tensor, text: str, reference: Any = None, **template_fields
) -> dict[str, torch.Tensor]:
    """Rows and labels of one utterance whose audio is already encoded.

    Args:
        processor: a `CodecTTSProcessor` (Delay or Local layout).
        target_codes: codes of the target speech ``[frames, >= n_vq]`` (the first ``processor.n_vq`` codebooks are used).
        text: its transcript; reference / template fields as for ``processor.build_user_message`` (references given
            as codes, so that no codec is needed).

    Returns:
        ``{"input_ids": LongTensor [T, 1 + n_vq], "labels": LongTensor [T, 1 + n_vq]}`` (labels shifted, ``-100`` =
        not supervised; see the module docstring).
    """
    user = processor.build_user_message(text=text, reference=reference, **template_fields)
    assistant = processor.build_assistant_message([target_codes])
    prompt = processor([[user]], mode="generation")["input_ids"][0]
    full = processor([[user, assistant]], mode="computing_loss")["input_ids"][0]
    n_prompt = prompt.shape[0]
    if full.shape[0] <= n_prompt or not torch.equal(full[:n_prompt], prompt):
        raise ValueError(
            "the generation prompt is not a prefix of the training sequence: the chat template renders the opened "
            "assistant turn differently from a complete one, so the labels cannot be aligned"
        )
    labels = full[1:].clone()
    labels[: n_prompt - 1] = IGNORE_INDEX
    audio = labels[:, 1:]
    audio[audio == processor.audio_pad_code] = IGNORE_INDEX
    return {"input_ids": full[:-1].clone(), "labels": labels}


def prepare_training_examples(
    processor, records: Iterable[Mapping], *, base_dir: str | os.PathLike | None = None
) -> list[dict[str, torch.Tensor]]:
    """Records -> training examples (``input_ids`` / ``labels`` [T, 1 + n_vq]); every waveform of ``records`` (targets
    and references) is encoded in ONE codec call.

    Args:
        processor: a `CodecTTSProcessor`; it needs a codec only when some record holds audio rather than codes.
        records: dicts with the fields of the module docstring.
        base_dir: folder that relative audio paths are resolved against (e.g. the folder of a ``records.jsonl``).
    """
    base = Path(base_dir) if base_dir is not None else None
    parsed = [_parse_record(record, i, base) for i, record in enumerate(records)]
    pending: list[Any] = []
    slots: list[tuple[int, int | None]] = []  # (record, reference index or None for the target)
    for i, record in enumerate(parsed):
        if record.target[0] == "audio":
            pending.append(record.target[1])
            slots.append((i, None))
        for j, item in enumerate(record.references or []):
            if item is not None and item[0] == "audio":
                pending.append(item[1])
                slots.append((i, j))
    if pending:
        for (i, j), codes in zip(slots, processor.encode_audio(pending, n_vq=processor.n_vq)):
            if j is None:
                parsed[i].target = ("codes", codes)
            else:
                parsed[i].references[j] = ("codes", codes)
    examples = []
    for i, record in enumerate(parsed):
        codes = record.target[1]
        if codes.shape[1] < processor.n_vq:
            raise TrainingRecordError(
                f"record {i}: the target codes have {codes.shape[1]} codebooks, {processor.n_vq} needed"
            )
        if codes.shape[0] == 0:
            raise TrainingRecordError(f"record {i}: the target audio is shorter than one codec frame")
        reference = None if record.references is None else [r if r is None else r[1] for r in record.references]
        examples.append(build_training_example(processor, codes, reference=reference, **record.fields))
    return examples


def training_map_function(processor, *, base_dir: str | os.PathLike | None = None):
    """A function for ``dataset.map(fn, batched=True, remove_columns=dataset.column_names)`` that turns a batch of
    record columns into ``input_ids`` / ``labels`` columns (nested int lists), encoding the batch's audio in one call.
    """

    def map_batch(batch: Mapping[str, Sequence]) -> dict[str, list]:
        size = len(next(iter(batch.values())))
        records = [{key: values[i] for key, values in batch.items()} for i in range(size)]
        examples = prepare_training_examples(processor, records, base_dir=base_dir)
        return {
            "input_ids": [e["input_ids"].tolist() for e in examples],
            "labels": [e["labels"].tolist() for e in examples],
        }

    return map_batch


# ---------------------------------------------------------------------------------------------------------------------
# collator
# ---------------------------------------------------------------------------------------------------------------------


@dataclass
class CodecTTSDataCollator:
    """Pad training examples into a batch for the Delay / Local generators.

    ``input_ids`` pad rows are ``[pad_token_id, audio_pad_code, ...]``, labels ``-100``, ``attention_mask`` 0. Left
    padding by default, like the original fine-tuning collate (right padding gives the same loss; positions differ).

    Args:
        pad_token_id: text pad id (the model config's ``pad_token_id``).
        audio_pad_code: audio pad code (``audio_vocab_size``).
        padding_side: ``"left"`` or ``"right"``.
        pad_to_multiple_of: round the padded length up to a multiple of this (tensor-core friendly shapes).
    """

    pad_token_id: int
    audio_pad_code: int
    padding_side: str = "left"
    pad_to_multiple_of: int | None = None

    def __post_init__(self):
        if self.padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {self.padding_side!r}")
        if self.pad_to_multiple_of is not None and self.pad_to_multiple_of < 1:
            raise ValueError(f"pad_to_multiple_of must be a positive int, got {self.pad_to_multiple_of}")

    @classmethod
    def from_processor(cls, processor, **kwargs) -> CodecTTSDataCollator:
        return cls(pad_token_id=processor.pad_token_id, audio_pad_code=processor.audio_pad_code, **kwargs)

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        if not features:
            raise ValueError("cannot collate an empty list of examples")
        ids = [torch.as_tensor(f["input_ids"], dtype=torch.long) for f in features]
        has_labels = ["labels" in f and f["labels"] is not None for f in features]
        if any(has_labels) and not all(has_labels):
            raise ValueError("either every example has 'labels' or none has")
        labels = [torch.as_tensor(f["labels"], dtype=torch.long) for f in features] if all(has_labels) else None
        width = ids[0].shape[-1]
        for i, x in enumerate(ids):
            if x.dim() != 2 or x.shape[-1] != width or x.shape[0] == 0:
                raise ValueError(f"example {i}: input_ids must be non-empty [rows, {width}], got {tuple(x.shape)}")
            if labels is not None and labels[i].shape != x.shape:
                raise ValueError(
                    f"example {i}: labels {tuple(labels[i].shape)} do not match input_ids {tuple(x.shape)}"
                )
        length = max(x.shape[0] for x in ids)
        if self.pad_to_multiple_of:
            length = -(-length // self.pad_to_multiple_of) * self.pad_to_multiple_of
        batch_ids = torch.full((len(ids), length, width), self.audio_pad_code, dtype=torch.long)
        batch_ids[..., 0] = self.pad_token_id
        mask = torch.zeros(len(ids), length, dtype=torch.long)
        batch_labels = torch.full((len(ids), length, width), IGNORE_INDEX, dtype=torch.long)
        for b, x in enumerate(ids):
            rows = slice(length - x.shape[0], length) if self.padding_side == "left" else slice(0, x.shape[0])
            batch_ids[b, rows] = x
            mask[b, rows] = 1
            if labels is not None:
                batch_labels[b, rows] = labels[b]
        out = {"input_ids": batch_ids, "attention_mask": mask}
        if labels is not None:
            out["labels"] = batch_labels
        return out
