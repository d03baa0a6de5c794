"""Reading original checkpoints and writing converted folders safely.

Shared by every converter: sharded safetensors loading, key/shape validation with errors that name the offending
tensors, and an all-or-nothing output directory (a failed conversion never leaves a half-written folder, and the
source folder is never touched).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator, Mapping

import torch
from safetensors import safe_open
from safetensors.torch import save_file

# Largest safetensors file a converter writes (the Hub's usual shard size); bigger checkpoints get an index.
DEFAULT_MAX_SHARD_BYTES = 5 * 1024**3


class CheckpointMismatchError(ValueError):
    """The tensors of a checkpoint do not match what the model expects (missing, unexpected or mis-shaped)."""


def read_json(path: str | os.PathLike) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def safetensors_files(folder: str | os.PathLike) -> list[Path]:
    """The weight files of a (possibly sharded) safetensors checkpoint folder, in a stable order."""
    folder = Path(folder)
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        weight_map = read_json(index).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise CheckpointMismatchError(f"{index} has no 'weight_map'")
        files = sorted({folder / name for name in weight_map.values()})
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise FileNotFoundError(f"shards listed in {index} are missing: {missing}")
        return files
    single = folder / "model.safetensors"
    if single.is_file():
        return [single]
    found = sorted(folder.glob("*.safetensors"))
    if found:
        return found
    raise FileNotFoundError(f"no safetensors weights (model.safetensors or an index) in {folder}")


def load_state_dict(folder: str | os.PathLike) -> dict[str, torch.Tensor]:
    """All tensors of a safetensors checkpoint folder (single file or sharded with an index)."""
    state: dict[str, torch.Tensor] = {}
    for file in safetensors_files(folder):
        with safe_open(str(file), framework="pt") as f:
            for key in f.keys():
                if key in state:
                    raise CheckpointMismatchError(f"tensor {key!r} appears in more than one shard ({file.name})")
                state[key] = f.get_tensor(key)
    return state


def check_state_dict(
    state: Mapping[str, torch.Tensor], expected: Mapping[str, tuple[int, ...]], what: str = "checkpoint"
) -> None:
    """Raise :class:`CheckpointMismatchError` naming every missing, unexpected or mis-shaped tensor."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    misshaped = sorted(
        f"{k}: expected {tuple(expected[k])}, found {tuple(state[k].shape)}"
        for k in set(expected) & set(state)
        if tuple(state[k].shape) != tuple(expected[k])
    )
    problems = []
    if missing:
        problems.append(f"missing tensors ({len(missing)}): {_preview(missing)}")
    if unexpected:
        problems.append(f"unexpected tensors ({len(unexpected)}): {_preview(unexpected)}")
    if misshaped:
        problems.append(f"tensors with the wrong shape ({len(misshaped)}): {_preview(misshaped)}")
    if problems:
        raise CheckpointMismatchError(f"{what} does not match the model: " + "; ".join(problems))


def _preview(items: list[str], limit: int = 12) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... (+{len(items) - limit} more)" if len(items) > limit else "")


def save_sharded_safetensors(
    state: Mapping[str, torch.Tensor], out: Path, max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES
) -> None:
    """``model.safetensors``, or ``model-0000i-of-0000n.safetensors`` + ``model.safetensors.index.json`` (tensors
    in sorted key order, a new shard whenever the next tensor would exceed ``max_shard_bytes``)."""
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for key in sorted(state):
        tensor = state[key].contiguous()
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][key] = tensor
        size += nbytes
    metadata = {"format": "pt"}
    if len(shards) == 1:
        save_file(shards[0], str(out / "model.safetensors"), metadata=metadata)
        return
    weight_map = {}
    for i, shard in enumerate(shards, start=1):
        name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(out / name), metadata=metadata)
        weight_map.update(dict.fromkeys(shard, name))
    total = sum(t.numel() * t.element_size() for t in state.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")


def write_converted_model(
    out: Path,
    config,
    state: Mapping[str, torch.Tensor],
    architecture: str,
    generation_config=None,
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
) -> None:
    """Write a converted model into the existing folder ``out``: ``config.json`` (with ``architectures``),
    ``generation_config.json`` (if given) and the (sharded) safetensors weights, stored as they are (no model is
    instantiated, so a checkpoint needs about 1x its size in RAM). ``state`` must already be validated."""
    out = Path(out)
    config.architectures = [architecture]
    config.save_pretrained(out)
    if generation_config is not None:
        generation_config.save_pretrained(out)
    save_sharded_safetensors(state, out, max_shard_bytes)


@contextlib.contextmanager
def atomic_output_dir(dst: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder next to ``dst``; it becomes ``dst`` only if the block finishes without error.

    ``dst`` must not exist (or be an empty folder) unless ``overwrite``; with ``overwrite`` the old folder is
    replaced only after the new one is complete.
    """
    dst = Path(dst).absolute()
    if dst.exists():
        if not dst.is_dir():
            raise FileExistsError(f"{dst} exists and is not a folder")
        if any(dst.iterdir()) and not overwrite:
            raise FileExistsError(f"{dst} exists and is not empty (pass overwrite=True / --overwrite to replace it)")
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.tmp-", dir=dst.parent))
    try:
        yield tmp
        _set_default_permissions(tmp)
        if dst.exists():
            old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
            os.replace(dst, old)
            os.replace(tmp, dst)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def default_mode(directory: bool) -> int:
    """The mode a new file/folder would get from the process umask (temporary files are created private)."""
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask


def _set_default_permissions(folder: Path) -> None:
    folder.chmod(default_mode(directory=True))
    for path in folder.rglob("*"):
        if path.is_dir():
            path.chmod(default_mode(directory=True))
        elif path.stat().st_mode & 0o777 == 0o600:
            path.chmod(default_mode(directory=False))


def same_folder(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    return Path(a).resolve() == Path(b).resolve()
