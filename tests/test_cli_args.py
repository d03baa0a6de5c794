"""The command line before any model is involved: instant argument handling, --version, help text, exit codes."""

from __future__ import annotations

import subprocess
import sys

import pytest

import codectts
from codectts.cli import build_parser, main


def _run(*args: str) -> subprocess.CompletedProcess:
    code = (
        "import sys; sys.argv = ['codectts']\n"
        "from codectts.cli import main\n"
        f"status = main({list(args)!r})\n"
        "heavy = sorted(m for m in ('torch', 'transformers') if m in sys.modules)\n"
        "print('HEAVY', heavy); sys.exit(status)\n"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args", [("convert",), ("synthesize", "--help"), ("codec", "encode", "a", "b"), ("--version",)])
def test_arguments_are_handled_without_importing_torch_or_transformers(args):
    result = _run(*args)
    assert "HEAVY []" in result.stdout, result.stdout + result.stderr
    assert result.returncode == (0 if "--help" in args or "--version" in args else 2)


def test_version_and_python_dash_m(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"codectts {codectts.__version__}"
    result = subprocess.run([sys.executable, "-m", "codectts", "--version"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and codectts.__version__ in result.stdout


def test_help_is_plain_text_and_shows_defaults():
    parser = build_parser()
    top = parser.format_help()
    assert "``" not in top and ":func:" not in top
    commands = parser._subparsers._group_actions[0].choices
    synthesize = commands["synthesize"].format_help()
    for text in ("(default: 4096)", "--device", "--dtype", "--overwrite", "(default: auto)"):
        assert text in synthesize
    assert "(default: None)" not in synthesize
    for name in ("convert", "export", "codec", "synthesize", "demo"):
        assert "--debug" in commands[name].format_help()


@pytest.mark.parametrize(
    "args, message",
    [
        (["synthesize", "Hi", "--model", "m", "--out", "o.wav", "--tokens", "0"], "--tokens must be >= 1"),
        (["synthesize", "Hi", "--model", "m", "--out", "o.wav", "--max-new-tokens", "x"], "whole number"),
        (["codec", "encode", "a.wav", "b", "--model", "m", "--num-quantizers", "0"], "--num-quantizers"),
        (["synthesize", "Hi", "--model", "m", "--out", "o.wav", "--dtype", "int8"], "invalid choice"),
    ],
)
def test_argument_errors_exit_2_with_a_message(args, message, capsys):
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_errors_are_one_line_and_debug_shows_the_traceback(tmp_path, capsys):
    missing = tmp_path / "missing"
    assert main(["synthesize", "Hi", "--model", str(missing), "--out", str(tmp_path / "o.wav")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and "no such folder" in err
    with pytest.raises(ValueError, match="no such folder"):
        main(["--debug", "synthesize", "Hi", "--model", str(missing), "--out", str(tmp_path / "o.wav")])
    with pytest.raises(ValueError, match="no such folder"):
        main(["synthesize", "Hi", "--model", str(missing), "--out", str(tmp_path / "o.wav"), "--debug"])


def test_unexpected_errors_are_one_line_with_a_hint(monkeypatch, tmp_path, capsys):
    from codectts import cli

    def broken(args):
        raise RuntimeError("something\ninternal")

    monkeypatch.setattr(cli, "_cmd_demo", broken)
    assert main(["demo", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.strip() == "codectts demo: error: RuntimeError: something internal (run with --debug for the traceback)"
