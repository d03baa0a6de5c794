"""Reading original checkpoints and writing converted folders safely.

Shared by every converter: sharded safetensors loading, key/shape validation with errors that name the offending
tensors, and an all-or-nothing output directory (a failed conversion never leaves a half-written folder, and the
source folder is never touched).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
import warnings
from pathlib import Path
from typing import Iterator, Mapping

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

# Largest safetensors file a converter writes (the Hub's usual shard size); bigger checkpoints get an index.
DEFAULT_MAX_SHARD_BYTES = 5 * 1024**3


class CheckpointMismatchError(ValueError):
    """The tensors of a checkpoint do not match what the model expects (missing, unexpected or mis-shaped)."""


class PrefixRenames:
    """Tensor renaming between an original checkpoint layout and ours, by name prefix (first match wins).

    Args:
        prefixes: ``(original prefix, our prefix)`` pairs.
        unused: original tensor names that are dropped on conversion.
        family: checkpoint name used in error messages.
    """

    def __init__(self, prefixes: tuple[tuple[str, str], ...], unused: tuple[str, ...] = (), family: str = ""):
        self.prefixes, self.unused, self.family = prefixes, unused, family

    def to_ours(self, key: str) -> str | None:
        """Our name for an original tensor name; ``None`` for dropped tensors; raises for unknown names."""
        if key in self.unused:
            return None
        for old, new in self.prefixes:
            if key.startswith(old):
                return new + key[len(old) :]
        raise CheckpointMismatchError(f"unexpected tensor in the {self.family} checkpoint: {key!r}")

    def to_original(self, key: str) -> str:
        """The original name of one of our tensor names."""
        for old, new in self.prefixes:
            if key.startswith(new):
                return old + key[len(new) :]
        raise KeyError(f"{key!r} has no original name in the {self.family} layout")


def read_json(path: str | os.PathLike) -> dict:
    """A JSON file that must hold an object; errors name the file."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None
    except UnicodeDecodeError as error:
        raise ValueError(f"{path} is not a UTF-8 text file: {error}") from None
    except IsADirectoryError:
        raise ValueError(f"{path} is a folder, expected a JSON file") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object ({{...}}), found a {type(data).__name__}")
    return data


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
    from tqdm.auto import tqdm

    state: dict[str, torch.Tensor] = {}
    files = safetensors_files(folder)
    # a progress bar on terminals (tqdm's `disable=None`): real checkpoints take minutes to read
    with tqdm(total=sum(f.stat().st_size for f in files), unit="B", unit_scale=True, desc="reading weights",
              disable=None) as bar:
        for file in files:
            try:
                with safe_open(str(file), framework="pt") as f:
                    for key in f.keys():
                        if key in state:
                            raise CheckpointMismatchError(
                                f"tensor {key!r} appears in more than one shard ({file.name})"
                            )
                        state[key] = f.get_tensor(key)
            except (OSError, RuntimeError, SafetensorError) as error:
                if isinstance(error, FileNotFoundError):
                    raise
                raise CheckpointMismatchError(f"cannot read {file}: {error}") from error
            bar.update(file.stat().st_size)
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


# A file that every folder written through `atomic_output_dir` carries: `overwrite=True` replaces only folders that
# have it, never an arbitrary folder that happens to be at the destination. Constant content: two runs on the same
# inputs give the same bytes.
OUTPUT_MARKER = ".codectts-output"
_MARKER_TEXT = "This folder was written by codectts; `--overwrite` may replace it as a whole.\n"
# Hidden siblings of a destination `d` while a run writes it: `.d.tmp-<pid>-<host>-<random>` (the new folder, and
# any scratch space of that run) and `.d.old-<pid>-<host>-<random>` (the previous folder while it is replaced).
# <host> (a hash of the host name) keeps a run from judging, by pid, folders that a run on another machine is
# writing into a shared file system.
_SIBLING = re.compile(r"^\.(?P<name>.+)\.(?:tmp|old)-(?P<pid>\d+)-(?P<host>[0-9a-f]{8})-[^/]*$")


def _host_tag() -> str:
    return hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]


class OutputFolderError(FileExistsError):
    """The output folder cannot be written: it exists (without ``overwrite``), was not written by codectts, or
    appeared while this run was writing."""


class OutputOverlapsSourceError(ValueError):
    """The output folder is, contains or is inside a folder that the operation reads."""


def check_output_not_in_sources(dst: str | os.PathLike, sources) -> None:
    """Refuse an output folder that is, contains or is contained in one of the ``sources`` (which are only read).

    Writing into a source would modify it; replacing a folder that contains a source (``--overwrite``) would delete
    it.
    """
    target = Path(dst).resolve()
    for source in sources:
        if source is None:
            continue
        src = Path(source).resolve()
        if target == src:
            relation = "is"
        elif src.is_relative_to(target):
            relation = "contains"
        elif target.is_relative_to(src):
            relation = "is inside"
        else:
            continue
        raise OutputOverlapsSourceError(
            f"the destination must differ from the source folder: {dst} {relation} the source {source} (sources are "
            "only read; choose an output folder outside them)"
        )


def is_codectts_output(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` was written by :func:`atomic_output_dir` (it carries the marker file)."""
    return (Path(folder) / OUTPUT_MARKER).is_file()


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return True  # cannot tell: keep the folder
    return True


def clean_stale_siblings(dst: str | os.PathLike) -> list[Path]:
    """Remove the hidden temporary folders that runs writing ``dst`` left behind when they were killed (their
    process no longer exists); returns the removed paths and warns about each (so it is never silent)."""
    dst = Path(dst).absolute()
    removed = []
    if not dst.parent.is_dir():
        return removed
    for path in dst.parent.iterdir():
        match = _SIBLING.match(path.name)
        if not match or match["name"] != dst.name or match["host"] != _host_tag() or _pid_alive(int(match["pid"])):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                path.unlink()
        if not path.exists():
            removed.append(path)
            warnings.warn(f"removed {path}, left behind by an interrupted codectts run (process gone)", stacklevel=3)
    return removed


def temporary_sibling(dst: str | os.PathLike, kind: str = "tmp") -> Path:
    """A new private folder ``.<dst name>.<kind>-<pid>-<host>-<random>`` next to ``dst`` (cleaned up by later runs if this
    process dies before removing it)."""
    dst = Path(dst).absolute()
    return Path(tempfile.mkdtemp(prefix=f".{dst.name}.{kind}-{os.getpid()}-{_host_tag()}-", dir=dst.parent))


def _check_destination(dst: Path, overwrite: bool) -> None:
    if dst.is_symlink() or (dst.exists() and not dst.is_dir()):
        raise OutputFolderError(f"{dst} exists and is not a folder")
    if not dst.exists() or not any(dst.iterdir()):
        return
    if not overwrite:
        raise OutputFolderError(f"{dst} exists and is not empty (pass overwrite=True / --overwrite to replace it)")
    if not is_codectts_output(dst):
        raise OutputFolderError(
            f"refusing to replace {dst}: it was not written by codectts (no {OUTPUT_MARKER} file), and --overwrite "
            "only replaces folders that codectts wrote; choose another output folder or remove it yourself"
        )


def _rename_no_replace(src: Path, dst: Path) -> None:
    """Move the folder ``src`` to ``dst``; fails if ``dst`` holds anything (an empty folder is replaced)."""
    try:
        os.rename(src, dst)  # POSIX: replaces only an empty folder; ENOTEMPTY/EEXIST otherwise
    except OSError as error:
        if dst.exists() or dst.is_symlink():
            raise OutputFolderError(
                f"{dst} appeared while this run was writing it (another run?); it was left as it is and this "
                "run's output discarded"
            ) from error
        raise


@contextlib.contextmanager
def atomic_output_dir(dst: str | os.PathLike, overwrite: bool = False, sources=()) -> Iterator[Path]:
    """Yield a temporary folder next to ``dst``; it becomes ``dst`` only if the block finishes without error.

    * ``dst`` must not exist (or be an empty folder) unless ``overwrite``; ``overwrite`` replaces only a folder that
      codectts wrote (it carries the :data:`OUTPUT_MARKER` file), and only after the new one is complete.
    * ``dst`` must not be, contain or be inside one of ``sources`` (the folders the block reads).
    * Creation is atomic against concurrent runs: the finished folder is renamed into place, and that rename fails
      (:class:`OutputFolderError`, the other run's folder untouched) if ``dst`` appeared meanwhile.
    * Temporary folders of earlier runs that were killed (SIGKILL, power loss) are removed, with a warning.
    """
    dst = Path(dst).absolute()
    check_output_not_in_sources(dst, sources)
    _check_destination(dst, overwrite)
    dst.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_siblings(dst)
    tmp = temporary_sibling(dst)
    try:
        yield tmp
        (tmp / OUTPUT_MARKER).write_text(_MARKER_TEXT, encoding="utf-8")
        _set_default_permissions(tmp)
        _check_destination(dst, overwrite)  # again: it may have changed while the block ran
        if overwrite and dst.exists() and any(dst.iterdir()):  # checked above: a folder codectts wrote
            old = temporary_sibling(dst, "old")
            os.rename(dst, old / dst.name)
            try:
                _rename_no_replace(tmp, dst)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.rename(old / dst.name, dst)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            _rename_no_replace(tmp, dst)
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
