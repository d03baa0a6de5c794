"""Flattening a nested package into remote-code files, on a synthetic package tree (no model needed)."""

from __future__ import annotations

import ast
import importlib
import sys
import textwrap
from pathlib import Path

import pytest

from codectts.conversion.flatten import FlattenError, PackageFlattener, flat_module_name
from codectts.conversion.isolation import run_without_codectts

PKG = "fakepkg"

# Every subpackage has a module called `thing` (flat-name clash), names come through a subpackage __init__, imports
# are lazy (inside a function), aliased, multi-line, on a line after non-ASCII text, and one module is reached only
# indirectly (modeling.math_utils: transformers 5.0 would not copy it without the entry module's trailer).
TREE = {
    "__init__.py": "raise RuntimeError('the package root must never be exported')\n",
    "cli.py": "def main():\n    return 0\n",
    "configuration/__init__.py": "from .thing import ThingConfig\n",
    "configuration/thing.py": "class ThingConfig:\n    size = 3\n",
    "modeling/__init__.py": "",
    "modeling/unused.py": "UNUSED = True\n",
    "modeling/math_utils.py": "def two():\n    return 2\n",
    "modeling/layers.py": (
        '_NAME = "café"; from .math_utils import two  # noqa: E702\n\n\ndef double(x):\n    return x * two()\n\n\n'
        "def triple(x):\n    return 3 * x\n"
    ),
    "modeling/thing.py": textwrap.dedent(
        '''\
        """A model."""

        from __future__ import annotations

        from ..configuration import ThingConfig
        from .layers import (
            double,  # a comment the rewrite may drop
            triple as times_three,
        )


        class ThingModel:
            config_class = ThingConfig

            def run(self, x):
                from ..processing.thing import helper as add_size

                return add_size(times_three(double(x)))
        '''
    ),
    "processing/__init__.py": "",
    "processing/thing.py": "from ..configuration.thing import ThingConfig as Cfg\n\n\ndef helper(x):\n    return x + Cfg.size\n",
}


def make_tree(root: Path, extra: dict[str, str] | None = None) -> Path:
    package = root / PKG
    for rel, text in {**TREE, **(extra or {})}.items():
        (package / rel).parent.mkdir(parents=True, exist_ok=True)
        (package / rel).write_text(text, encoding="utf-8")
    return package


def flatten(package: Path, roots=("modeling.thing",)) -> dict[str, str]:
    return PackageFlattener(package, PKG, header="# generated from {source}\n").flatten(roots)


def write(files: dict[str, str], folder: Path) -> Path:
    folder.mkdir(parents=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def test_flat_names_keep_the_subpackage():
    assert flat_module_name("modeling.delay") == "modeling_delay"
    assert flat_module_name("configuration.delay") == "configuration_delay"


def test_flatten_follows_imports_transitively_and_only_those(tmp_path):
    files = flatten(make_tree(tmp_path))
    assert sorted(files) == [
        "configuration_thing.py",
        "modeling_layers.py",
        "modeling_math_utils.py",
        "modeling_thing.py",
        "processing_thing.py",
    ]
    for name, text in files.items():
        assert text.startswith(f"# generated from {PKG}/{name.replace('_', '/', 1)}\n")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ImportFrom) and node.level:
                assert node.level == 1 and f"{node.module}.py" in files, (name, ast.unparse(node))
    thing = files["modeling_thing.py"]
    assert "from .configuration_thing import ThingConfig\n" in thing
    assert "from .modeling_layers import double, triple as times_three\n" in thing
    assert "        from .processing_thing import helper as add_size\n" in thing  # indentation kept
    assert "from .modeling_math_utils import __name__" in thing  # trailer for the indirect dependency
    assert '_NAME = "café"; from .modeling_math_utils import two' in files["modeling_layers.py"]


def test_flattened_code_runs_as_a_flat_package(tmp_path):
    folder = write(flatten(make_tree(tmp_path)), tmp_path / "flatpkg")
    (folder / "__init__.py").write_text("")
    sys.path.insert(0, str(tmp_path))
    try:
        module = importlib.import_module("flatpkg.modeling_thing")
        assert module.ThingModel().run(1) == 1 * 2 * 3 + 3
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m == "flatpkg" or m.startswith("flatpkg.")]:
            del sys.modules[name]


def test_transformers_remote_code_loader_loads_the_flat_folder(tmp_path):
    """transformers' own loader (the installed version) copies what it needs from the flat folder and runs it."""
    folder = write(flatten(make_tree(tmp_path)), tmp_path / "flat_thing")
    work = tmp_path / "work"
    work.mkdir()
    result = run_without_codectts(
        "from transformers.dynamic_module_utils import get_class_from_dynamic_module\n"
        f"cls = get_class_from_dynamic_module('modeling_thing.ThingModel', {str(folder)!r})\n"
        "print(cls().run(1))\n",
        cwd=work,
        modules_cache=tmp_path / "modules",
    )
    assert result.stdout.strip().splitlines()[-1] == "9"


def test_flatten_is_deterministic(tmp_path):
    package = make_tree(tmp_path)
    assert flatten(package) == flatten(package)
    assert flatten(package, roots=("processing.thing", "modeling.thing")) == flatten(package)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (f"from {PKG}.modeling.layers import double\n", "modeling/bad.py:1 imports fakepkg absolutely"),
        (f"import os\nimport {PKG}.modeling.layers\n", "modeling/bad.py:2 imports fakepkg absolutely"),
        ("from . import layers\n", "modeling/bad.py:1: `from . import ...` cannot be flattened"),
        ("def f():\n    from ..cli import main\n", "modeling/bad.py:2 imports fakepkg.cli, which is outside"),
        ("from ...x import y\n", "beyond the top"),
        ("from .layers import *\n", "star imports"),
        ("from ..configuration import Missing\n", "does not re-export 'Missing'"),
        ('"""Example:\n\n    from ..modeling.thing import ThingModel\n"""\n', "reads `from ..modeling.thing import`"),
    ],
)
def test_unflattenable_imports_are_refused_with_file_and_line(tmp_path, source, message):
    package = make_tree(tmp_path, {"modeling/bad.py": source})
    with pytest.raises(FlattenError, match=message.replace("(", r"\(").replace("*", r"\*").replace(".", r"\.")):
        flatten(package, roots=("modeling.bad",))


def test_roots_outside_the_exported_subpackages_are_refused(tmp_path):
    package = make_tree(tmp_path)
    with pytest.raises(FlattenError, match="outside the exported subpackages"):
        flatten(package, roots=("cli",))
    with pytest.raises(FlattenError, match="is a package"):
        flatten(package, roots=("configuration",))


def test_flat_name_collisions_are_refused(tmp_path):
    package = make_tree(
        tmp_path,
        {
            "modeling/a_b.py": "from .a.b import X\n",
            "modeling/a/__init__.py": "",
            "modeling/a/b.py": "X = 1\n",
        },
    )
    with pytest.raises(FlattenError, match="would both be flattened to modeling_a_b.py"):
        flatten(package, roots=("modeling.a_b",))


def test_classes_outside_the_package_are_refused(tmp_path):
    with pytest.raises(FlattenError, match="outside the fakepkg package"):
        PackageFlattener(make_tree(tmp_path), PKG).flatten([Path])
