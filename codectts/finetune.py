"""Fine-tuning the Delay and Local generators with `transformers.Trainer` (+ LoRA through `peft`).

Python API (``codectts finetune`` is a thin wrapper around :func:`finetune`)::

    from codectts.finetune import finetune
    summary = finetune("bundle/", "records.jsonl", "tuned/", lora_rank=16, epochs=3)

Pieces for your own training loop:

* :func:`codectts.processing.moss.training.prepare_training_examples` — records -> rows + labels (audio encoded once);
* :class:`codectts.processing.moss.training.CodecTTSDataCollator` — padding for `Trainer`;
* :func:`backbone_lora_targets` / :func:`add_lora` — LoRA on the backbone's attention and MLP projections
  (embeddings, heads and the Local adapters/local transformer stay frozen unless you list them);
  ``peft_model.merge_and_unload()`` gives back a plain model whose ``save_pretrained`` folder loads without ``peft``.

The output of :func:`finetune` is a complete bundle (model, tokenizer, processor config, codec) that
``AutoModel``/``AutoProcessor`` load, that ``codectts export --format original`` turns into the official layout, and
(with LoRA) the adapter alone in ``lora_adapter/``.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["FinetuneSummary", "add_lora", "backbone_lora_targets", "finetune", "load_records"]

# Backbone linear layers LoRA adapts by default (Qwen3 attention and MLP projections).
BACKBONE_LORA_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
LORA_ADAPTER_SUBFOLDER = "lora_adapter"


def _transformer_stacks(model) -> list[str]:
    """Module paths of the transformer stacks of a generator: the Qwen3 backbone (Delay: ``model``, Local:
    ``model.language_model``) and, for Local, the local transformer that decodes the codebooks of a frame."""
    model_type = getattr(model.config, "model_type", "")
    if model_type == "codectts_delay":
        return ["model"]
    if model_type == "codectts_local":
        return ["model.language_model", "local_transformer"]
    raise ValueError(f"LoRA targets are defined for the Delay and Local generators, not model_type {model_type!r}")


def backbone_lora_targets(model) -> str:
    """A ``peft`` ``target_modules`` regex matching exactly the attention and MLP projections of the generator's
    transformer stacks (Delay: the backbone; Local: the backbone and the local transformer, without which the codes
    of a frame could not adapt).

    Embeddings, heads, norms and Local's SwiGLU adapters (whose ``gate_proj``/``up_proj``/``down_proj`` names would
    otherwise match) stay frozen: the regex anchors the names to the decoder layers.
    """
    stacks = "|".join(re.escape(prefix) for prefix in _transformer_stacks(model))
    names = "|".join(BACKBONE_LORA_MODULES)
    return rf"^({stacks})\.layers\.\d+\.(self_attn|mlp)\.({names})$"


def add_lora(
    model,
    rank: int = 16,
    alpha: float | None = None,
    dropout: float = 0.0,
    target_modules: str | list[str] | None = None,
    modules_to_save: list[str] | None = None,
):
    """Wrap ``model`` in a ``peft`` LoRA model (default targets: :func:`backbone_lora_targets`; ``alpha`` defaults
    to ``2 * rank``). Only the LoRA matrices (and ``modules_to_save``) are trainable."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as err:  # pragma: no cover - exercised without the extra
        raise ImportError("LoRA needs peft: pip install 'codectts[peft]'") from err
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ValueError(f"LoRA rank must be a positive int, got {rank!r}")
    config = LoraConfig(
        r=rank,
        lora_alpha=2 * rank if alpha is None else alpha,
        lora_dropout=dropout,
        target_modules=target_modules or backbone_lora_targets(model),
        modules_to_save=modules_to_save,
        bias="none",
    )
    return get_peft_model(model, config)


def load_records(path: str | os.PathLike) -> list[dict]:
    """Read a ``records.jsonl`` file (one JSON object per line; blank lines skipped) with line-numbered errors."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"training data {path} does not exist")
    records = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{number}: not valid JSON ({err.msg})") from None
            if not isinstance(record, dict):
                # a data error like bad JSON (ValueError: the CLI reports it), not a programming error
                raise ValueError(f"{path}:{number}: each line must be a JSON object, got {type(record).__name__}")  # noqa: TRY004
            records.append(record)
    if not records:
        raise ValueError(f"{path} holds no records")
    return records


@dataclass
class FinetuneSummary:
    """What :func:`finetune` did."""

    output_dir: str
    model_type: str
    examples: int
    audio_frames: int
    epochs: float
    steps: int
    trainable_parameters: int
    total_parameters: int
    lora_rank: int | None
    first_loss: float | None
    final_loss: float | None
    eval_loss: float | None
    seconds: float
    history: list[dict[str, Any]] = field(default_factory=list, repr=False)

    def to_text(self) -> str:
        trainable = f"{self.trainable_parameters:,} of {self.total_parameters:,} parameters"
        method = f"LoRA rank {self.lora_rank} (merged)" if self.lora_rank else "full fine-tuning"
        loss = " -> ".join(f"{x:.4f}" for x in (self.first_loss, self.final_loss) if x is not None) or "n/a"
        lines = [
            f"fine-tuned {self.model_type} on {self.examples} utterance(s) ({self.audio_frames} audio frames)",
            f"  method       {method}, {trainable} trained",
            f"  schedule     {self.epochs:g} epoch(s), {self.steps} optimizer step(s), {self.seconds:.1f} s",
            f"  train loss   {loss}",
        ]
        if self.eval_loss is not None:
            lines.append(f"  eval loss    {self.eval_loss:.4f}")
        lines.append(f"  saved to     {self.output_dir}")
        return "\n".join(lines)


def _load_bundle(model_dir: Path, codec: str | os.PathLike | None, dtype: str | None):
    from transformers import AutoModel, AutoProcessor

    import codectts  # noqa: F401  (registers the Auto classes)

    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"{model_dir} has no config.json (expected a converted Delay/Local bundle)")
    audio_tokenizer = None
    if codec is not None:
        audio_tokenizer = AutoModel.from_pretrained(codec).eval()
    try:
        processor = AutoProcessor.from_pretrained(model_dir, audio_tokenizer=audio_tokenizer)
    except (OSError, ValueError) as err:
        raise ValueError(
            f"cannot load a processor from {model_dir} ({err}); fine-tuning needs a bundle with the tokenizer "
            "(`codectts convert SRC DST --tokenizer TOK --audio-tokenizer CODEC`)"
        ) from err
    model = AutoModel.from_pretrained(model_dir, dtype=dtype)
    if getattr(model.config, "model_type", None) not in ("codectts_delay", "codectts_local"):
        raise ValueError(
            f"{model_dir} holds a {model.config.model_type!r} model; fine-tuning needs a Delay/Local generator"
        )
    return model, processor


def _last_checkpoint(folder: Path) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(str(folder)) if folder.is_dir() else None


def finetune(
    model_dir: str | os.PathLike,
    data: str | os.PathLike | list[dict],
    out: str | os.PathLike,
    *,
    lora_rank: int | None = None,
    lora_alpha: float | None = None,
    epochs: float = 3.0,
    learning_rate: float | None = None,
    batch_size: int = 1,
    gradient_accumulation_steps: int = 1,
    codec: str | os.PathLike | None = None,
    eval_data: str | os.PathLike | list[dict] | None = None,
    gradient_checkpointing: bool = False,
    bf16: bool = False,
    fp16: bool = False,
    seed: int = 0,
    save_steps: int | None = None,
    resume: bool = False,
    keep_checkpoints: bool = False,
    overwrite: bool = False,
    disable_progress_bar: bool | None = None,
    dtype: str | None = None,
) -> FinetuneSummary:
    """Fine-tune a converted Delay/Local bundle on ``data`` and write the result as a bundle to ``out``.

    Args:
        model_dir: bundle folder (model + tokenizer + processor config; ``audio_tokenizer/`` when records hold audio).
        data: ``records.jsonl`` (relative audio paths resolve against its folder) or a list of record dicts
            (see :mod:`codectts.processing.moss.training`).
        out: output bundle folder, written completely at the end (must not exist or be empty unless ``overwrite``).
        lora_rank: train LoRA adapters of this rank on the backbone's attention/MLP (merged into the saved model,
            the adapter alone goes to ``out/lora_adapter``); ``None`` trains every parameter.
        epochs, learning_rate (default 2e-4 for LoRA, 2e-5 otherwise), batch_size, gradient_accumulation_steps,
        gradient_checkpointing, bf16, fp16 (mixed precision, GPU), seed: as in `TrainingArguments`.
        codec: codec folder to encode the audio with (default: the bundle's ``audio_tokenizer/``).
        eval_data: held-out records; ``eval_loss`` is computed after every epoch.
        save_steps: save a resumable checkpoint every ``save_steps`` steps (default: every epoch) in
            ``<out>.checkpoints/``; ``resume=True`` continues from the last one there.
        keep_checkpoints: keep ``<out>.checkpoints/`` after success (default: removed).
        dtype: weights dtype to load (default: float32 for full fine-tuning, the checkpoint's dtype with LoRA).
    """
    import torch
    from transformers import Trainer, TrainingArguments, set_seed

    from .conversion.io import atomic_output_dir
    from .modeling.compat import training_checkpointing_kwargs
    from .processing.moss.training import CodecTTSDataCollator, prepare_training_examples

    started = time.perf_counter()
    model_dir, out = Path(model_dir), Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} exists and is not empty (pass overwrite=True / --overwrite to replace it)")
    if epochs <= 0:
        raise ValueError(f"epochs must be positive, got {epochs}")
    if batch_size < 1 or gradient_accumulation_steps < 1:
        raise ValueError("batch_size and gradient_accumulation_steps must be >= 1")
    if bf16 and fp16:
        raise ValueError("choose one of bf16 and fp16 mixed precision")
    if learning_rate is None:
        learning_rate = 2e-4 if lora_rank else 2e-5
    if learning_rate <= 0:
        raise ValueError(f"learning_rate must be positive, got {learning_rate}")
    set_seed(seed)

    # full fine-tuning keeps float32 master weights (mixed precision comes from --bf16/--fp16); LoRA trains float32
    # adapters on the checkpoint's own dtype (bf16 for the releases), as usual
    model, processor = _load_bundle(model_dir, codec, dtype or ("auto" if lora_rank else "float32"))

    def examples_of(source):
        if isinstance(source, (str, os.PathLike)):
            return prepare_training_examples(processor, load_records(source), base_dir=Path(source).parent)
        return prepare_training_examples(processor, list(source))

    train_examples = examples_of(data)
    eval_examples = examples_of(eval_data) if eval_data is not None else None
    frames = sum(int((e["labels"][:, 1] >= 0).sum()) for e in train_examples)

    if lora_rank:
        model = add_lora(model, rank=lora_rank, alpha=lora_alpha)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())

    checkpoints = out.with_name(f"{out.name}.checkpoints")
    resume_from = _last_checkpoint(checkpoints) if resume else None
    if resume and resume_from is None:
        raise FileNotFoundError(f"--resume: no checkpoint in {checkpoints}")
    args = TrainingArguments(
        output_dir=str(checkpoints),
        num_train_epochs=epochs,
        learning_rate=learning_rate,
        per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=batch_size,
        gradient_accumulation_steps=gradient_accumulation_steps,
        **training_checkpointing_kwargs(gradient_checkpointing),
        bf16=bf16,
        fp16=fp16,
        seed=seed,
        # about 10 loss reports per epoch (the progress bar shows every step)
        logging_steps=max(1, math.ceil(len(train_examples) / (batch_size * gradient_accumulation_steps) / 10)),
        logging_strategy="steps",
        save_strategy="steps" if save_steps else "epoch",
        save_steps=save_steps or 500,
        save_total_limit=2,
        eval_strategy="epoch" if eval_examples else "no",
        report_to="none",
        disable_tqdm=disable_progress_bar,
        remove_unused_columns=False,
        label_names=["labels"],
        use_cpu=not torch.cuda.is_available(),
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train_examples,
        eval_dataset=eval_examples,
        data_collator=CodecTTSDataCollator.from_processor(processor),
    )
    trainer.train(resume_from_checkpoint=resume_from)
    eval_loss = trainer.evaluate()["eval_loss"] if eval_examples else None
    history = [dict(entry) for entry in trainer.state.log_history]
    losses = [entry["loss"] for entry in history if "loss" in entry]
    if any(not math.isfinite(x) for x in losses):
        raise FloatingPointError("the training loss became NaN/inf (nothing was saved); lower --learning-rate")

    final = model
    with atomic_output_dir(out, overwrite=overwrite) as tmp:
        if lora_rank:
            model.save_pretrained(tmp / LORA_ADAPTER_SUBFOLDER)
            final = model.merge_and_unload()
        final.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        summary = FinetuneSummary(
            output_dir=str(out),
            model_type=final.config.model_type,
            examples=len(train_examples),
            audio_frames=frames,
            epochs=float(epochs),
            steps=int(trainer.state.global_step),
            trainable_parameters=int(trainable),
            total_parameters=int(total),
            lora_rank=lora_rank,
            first_loss=losses[0] if losses else None,
            final_loss=losses[-1] if losses else None,
            eval_loss=eval_loss,
            seconds=time.perf_counter() - started,
            history=history,
        )
        (tmp / "training_summary.json").write_text(
            json.dumps({k: v for k, v in asdict(summary).items() if k != "history"}, indent=2) + "\n"
        )
    if not keep_checkpoints:
        shutil.rmtree(checkpoints, ignore_errors=True)
    return summary
