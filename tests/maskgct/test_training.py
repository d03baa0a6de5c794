"""Masked-token training: a few Trainer steps on the tiny T2S / S2A models lower the loss of spec 7.3."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import Dataset
from transformers import AutoModel, Trainer, TrainingArguments


class _Batches(Dataset):
    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def _data(model, n=8, length=24):
    g = torch.Generator().manual_seed(0)
    cfg = model.config
    items = []
    for _ in range(n):
        if cfg.model_type == "maskgct_t2s":
            x0 = torch.randint(0, 4, (length,), generator=g) * 3  # a small, learnable subset of the vocabulary
            items.append(
                {
                    "x0": x0,
                    "x_mask": torch.ones(length),
                    "phone_id": torch.randint(0, 50, (6,), generator=g),
                    "phone_mask": torch.ones(6, dtype=torch.long),
                }
            )
        else:
            x0 = torch.randint(0, 4, (length, cfg.num_quantizer), generator=g) * 5
            items.append({"x0": x0, "x_mask": torch.ones(length), "cond_code": x0[:, 0] % cfg.cond_codebook_size})
    return items


def _mean_loss(model, items, seeds=range(6)):
    model.eval()
    batch = {k: torch.stack([it[k] for it in items]) for k in items[0]}
    losses = []
    with torch.no_grad():
        for s in seeds:
            torch.manual_seed(s)
            losses.append(model(**batch).loss.item())
    return sum(losses) / len(losses)


@pytest.mark.parametrize("name", ["t2s", "s2a_full"])
def test_trainer_steps_lower_the_loss(converted, tmp_path, name):
    model = AutoModel.from_pretrained(str(converted / name))
    items = _data(model)
    before = _mean_loss(model, items)
    args = TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=4,
        num_train_epochs=6,
        learning_rate=3e-3,
        report_to=[],
        save_strategy="no",
        logging_strategy="no",
        use_cpu=True,
        seed=0,
        remove_unused_columns=False,
        disable_tqdm=True,
    )
    Trainer(model=model, args=args, train_dataset=_Batches(items)).train()
    after = _mean_loss(model, items)
    assert after < 0.8 * before, (before, after)


def test_gradient_checkpointing(converted):
    model = AutoModel.from_pretrained(str(converted / "t2s"))
    model.gradient_checkpointing_enable()
    assert model.diff_estimator.gradient_checkpointing
    model.train()
    item = _data(model, n=2)
    batch = {k: torch.stack([it[k] for it in item]) for k in item[0]}
    torch.manual_seed(0)
    model(**batch).loss.backward()
    assert model.diff_estimator.layers[0].self_attn.q_proj.weight.grad is not None
