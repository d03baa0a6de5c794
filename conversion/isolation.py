"""Run Python in a fresh subprocess that cannot import codectts, the way a Hub user without the package would.

``import codectts`` registers our classes with transformers' Auto classes, so loading an exported folder in a process
that has codectts would prove nothing about the exported code. The subprocess runs with ``python -S`` (no ``.pth``
files: that is how an editable install's import finder gets in) and an explicit ``PYTHONPATH`` made of this
interpreter's library folders minus any folder that holds a ``codectts`` package, from a working directory of the
caller's choosing, with the transformers remote-code cache in a folder of the caller's choosing too. Its first
statement asserts that ``import codectts`` fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

_GUARD = (
    "import importlib.util as _u\n"
    "assert _u.find_spec('codectts') is None, 'codectts must not be importable in the isolated process'\n"
    "del _u\n"
)


def isolated_pythonpath() -> list[str]:
    """The current interpreter's import folders (site-packages included) without any that hold codectts."""
    paths = []
    for entry in sys.path:
        if not entry or not os.path.isdir(entry) or entry in paths:
            continue
        if (Path(entry) / "codectts").exists() or (Path(entry) / "codectts.py").exists():
            continue
        paths.append(entry)
    return paths


def run_without_codectts(
    code: str, *, cwd: str | os.PathLike, modules_cache: str | os.PathLike, timeout: float = 600
) -> subprocess.CompletedProcess:
    """Run ``code`` in an isolated interpreter (see the module docstring); raise with its output if it fails.

    Args:
        code: Python source to run after the codectts guard.
        cwd: working directory of the subprocess (choose one that does not contain codectts).
        modules_cache: ``HF_MODULES_CACHE`` for the subprocess, so remote code is copied to a fresh place.
        timeout: seconds before the subprocess is killed.
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PYTHON", "HF_", "TRANSFORMERS_", "HUGGINGFACE_"))
    }
    env.update(
        PYTHONPATH=os.pathsep.join(isolated_pythonpath()),
        PYTHONDONTWRITEBYTECODE="1",
        HF_MODULES_CACHE=str(modules_cache),
        HF_HUB_OFFLINE="1",
        HF_HOME=str(Path(modules_cache) / "hf_home"),
    )
    result = subprocess.run(
        [sys.executable, "-S", "-c", _GUARD + code],
        check=False,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"isolated subprocess failed with exit code {result.returncode}\n--- stdout ---\n{result.stdout}\n"
            f"--- stderr ---\n{result.stderr}"
        )
    return result
