"""Output folders never lose data: no overlap with a source, --overwrite only replaces what codectts wrote, creation
is atomic against concurrent runs, and temporary folders of killed runs are cleaned up (conversion.io)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from codectts.conversion.io import (
    OUTPUT_MARKER,
    OutputFolderError,
    OutputOverlapsSourceError,
    atomic_output_dir,
    check_output_not_in_sources,
    clean_stale_siblings,
    read_json,
)


def _write(folder: Path, name: str = "weights.bin", text: str = "x") -> None:
    (folder / name).write_text(text)


def test_destination_may_not_be_contain_or_be_inside_a_source(tmp_path):
    src = tmp_path / "parent" / "src"
    src.mkdir(parents=True)
    for dst, relation in ((src, "is"), (tmp_path / "parent", "contains"), (src / "out", "is inside")):
        with pytest.raises(OutputOverlapsSourceError, match=relation):
            check_output_not_in_sources(dst, [src])
        with pytest.raises(ValueError, match="must differ from the source"), atomic_output_dir(dst, True, [src]):
            pass
    check_output_not_in_sources(tmp_path / "parent" / "sibling", [src, None])
    # through a symlink to the parent: still refused
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "parent")
    with pytest.raises(OutputOverlapsSourceError):
        check_output_not_in_sources(link, [src])


def test_overwrite_replaces_only_folders_codectts_wrote(tmp_path):
    dst = tmp_path / "out"
    dst.mkdir()
    _write(dst, "thesis.tex", "years of work")
    with pytest.raises(OutputFolderError, match="not written by codectts"), atomic_output_dir(dst, overwrite=True):
        pass
    assert (dst / "thesis.tex").read_text() == "years of work"

    ours = tmp_path / "ours"
    with atomic_output_dir(ours) as out:
        _write(out, "a")
    assert (ours / OUTPUT_MARKER).is_file() and (ours / "a").is_file()
    with pytest.raises(FileExistsError, match="not empty"), atomic_output_dir(ours):
        pass
    with atomic_output_dir(ours, overwrite=True) as out:
        _write(out, "b")
    assert sorted(p.name for p in ours.iterdir()) == sorted([OUTPUT_MARKER, "b"])
    # an empty folder may be filled without --overwrite
    empty = tmp_path / "empty"
    empty.mkdir()
    with atomic_output_dir(empty) as out:
        _write(out)
    assert (empty / "weights.bin").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "ours", "out"]  # no temporary folders left


def test_a_destination_that_appears_meanwhile_is_never_replaced(tmp_path):
    dst = tmp_path / "out"
    with pytest.raises(FileExistsError, match="not empty|appeared"), atomic_output_dir(dst) as first:
        _write(first, "first")
        with atomic_output_dir(dst) as second:  # a concurrent run that finishes first
            _write(second, "second")
    assert (dst / "second").is_file() and not (dst / "first").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_rename_into_place_refuses_a_target_created_after_the_last_check(tmp_path, monkeypatch):
    from codectts.conversion import io

    dst = tmp_path / "out"
    checks = []
    original = io._check_destination

    def racing_check(path, overwrite):
        original(path, overwrite)
        checks.append(path)
        if len(checks) == 2:  # the final check passed; another run creates the folder before the rename
            path.mkdir()
            _write(path, "theirs")

    monkeypatch.setattr(io, "_check_destination", racing_check)
    with pytest.raises(OutputFolderError, match="appeared"), atomic_output_dir(dst) as out:
        _write(out, "mine")
    assert sorted(p.name for p in dst.iterdir()) == ["theirs"]


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_temporary_folders_of_dead_runs_are_removed_with_a_warning(tmp_path):
    from codectts.conversion.io import _host_tag

    dst = tmp_path / "out"
    host = _host_tag()
    stale = tmp_path / f".out.tmp-{_dead_pid()}-{host}-abc123"
    stale.mkdir()
    _write(stale)
    old = tmp_path / f".out.old-{_dead_pid()}-{host}-q"
    old.mkdir()
    alive = tmp_path / f".out.tmp-{os.getpid()}-{host}-zzz"  # a run still in progress: kept
    alive.mkdir()
    other = tmp_path / f".other.tmp-{_dead_pid()}-{host}-x"  # another destination's: not ours to judge here
    other.mkdir()
    elsewhere = tmp_path / f".out.tmp-{_dead_pid()}-{'0' * 8 if host != '0' * 8 else '1' * 8}-x"  # another machine's
    elsewhere.mkdir()
    with pytest.warns(UserWarning, match="interrupted"), atomic_output_dir(dst) as out:
        _write(out)
    assert not stale.exists() and not old.exists()
    assert alive.exists() and other.exists() and elsewhere.exists()
    assert clean_stale_siblings(dst) == []


def test_read_json_names_the_file_and_refuses_non_objects(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"config.json must hold a JSON object"):
        read_json(path)
    path.write_text("{oops")
    with pytest.raises(ValueError, match=r"config.json is not valid JSON"):
        read_json(path)
