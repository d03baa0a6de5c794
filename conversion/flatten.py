"""Flatten part of the codectts package into the single folder of code files that transformers' remote code loads.

``AutoModel.from_pretrained(repo, trust_remote_code=True)`` imports the module named in ``config.json``'s
``auto_map`` from a *flat* folder and brings along the files it imports with ``from .x import Y`` (found by a regex
over the whole file text, whatever the block the import sits in). Our package is nested
(``configuration/``, ``modeling/``, ``processing/``), so the export generates one flat file per package module that the
needed classes reach through relative imports, and rewrites the imports:

* ``codectts/modeling/moss/delay.py`` becomes ``modeling_moss_delay.py``: the flat name always carries the
  subpackages as a prefix, so ``configuration/delay.py`` and ``modeling/delay.py`` cannot clash and the names follow transformers'
  ``configuration_*`` / ``modeling_*`` / ``processing_*`` convention;
* ``from ...configuration.moss.delay import DelayConfig`` becomes ``from .configuration_moss_delay import DelayConfig``;
* ``from ..modeling import Foo`` (a name re-exported by a subpackage ``__init__``) is resolved to the module that
  defines ``Foo``; subpackage ``__init__`` files themselves are never exported.

Imports that cannot work from a flat folder are refused with an error naming ``file:line``: absolute imports of the
package itself, ``from . import module`` (the loader only follows ``from .x import Y``), and imports of modules outside
the exported subpackages (the CLI, the converters, the package root whose import registers Auto classes).

transformers 5.0 copies only the files an *entry* module imports directly when it loads a local folder (newer versions
follow imports transitively), so every entry module gets a generated trailer that names the rest of its closure.

The output is deterministic: same sources, same bytes.
"""

from __future__ import annotations

import ast
import inspect
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_SUBPACKAGES = ("configuration", "modeling", "processing")
_MAX_LINE = 119
# What transformers' remote-code loader takes for a relative import (dynamic_module_utils.get_relative_imports).
_LOADER_IMPORT_PATTERN = re.compile(r"^\s*import\s+\.(\S+)\s*$|^\s*from\s+\.(\S+)\s+import", re.MULTILINE)
_TRAILER_ALIAS = "_codectts_flat_dependency"


class FlattenError(ValueError):
    """The package code cannot be turned into a flat remote-code folder (the message names ``file:line``)."""


_Names = list[tuple[str, "str | None"]]  # [(name, asname)] of one import statement


@dataclass
class _Module:
    dotted: str  # relative to the package root, e.g. "modeling.delay"
    path: Path
    source: str
    # every relative import statement of the file with what it becomes: [(flat target module, names)]
    rewrites: list[tuple[ast.ImportFrom, list[tuple[str, _Names]]]] = field(default_factory=list)

    @property
    def flat_name(self) -> str:
        return flat_module_name(self.dotted)

    @property
    def direct_dependencies(self) -> set[str]:
        """Flat names of the modules this one imports."""
        return {target for _, targets in self.rewrites for target, _ in targets}


def flat_module_name(dotted: str) -> str:
    """``"modeling.delay"`` -> ``"modeling_delay"`` (the subpackage is always kept as a prefix)."""
    return dotted.replace(".", "_")


class PackageFlattener:
    """Follows relative imports from root modules of a package and renders the flat code files.

    Args:
        package_root: folder of the import package (``codectts``'s folder: the repository root).
        package_name: its import name, used to refuse absolute self-imports.
        subpackages: the subpackages whose modules may be exported.
        header: first lines of every generated file; ``{source}`` is replaced by the package-relative source path.
    """

    def __init__(
        self,
        package_root: str | Path,
        package_name: str,
        subpackages: Iterable[str] = DEFAULT_SUBPACKAGES,
        header: str = "# Generated from {source}. Do not edit.\n",
    ):
        self.package_root = Path(package_root)
        self.package_name = package_name
        self.subpackages = tuple(subpackages)
        self.header = header if header.endswith("\n") else header + "\n"
        self._modules: dict[str, _Module] = {}  # by package-relative dotted name
        self._dotted_by_flat: dict[str, str] = {}
        self._init_exports: dict[str, dict[str, tuple[str, str]]] = {}

    # ----------------------------------------------------------------------------------------------------- public
    def module_of(self, obj: type | str) -> str:
        """Package-relative dotted module of a class (or of a dotted module name, absolute or relative).

        A class is located by its source file (what gets flattened) rather than by its ``__module__``, which depends
        on the name the files were imported under.
        """
        if isinstance(obj, str):
            return obj.removeprefix(self.package_name + ".")
        source = inspect.getsourcefile(obj)
        try:
            relative = Path(source).resolve().relative_to(self.package_root.resolve())
        except (TypeError, ValueError):
            raise FlattenError(
                f"{obj.__qualname__} is defined in {obj.__module__!r} ({source}), outside the {self.package_name} "
                f"package at {self.package_root}"
            ) from None
        parts = relative.with_suffix("").parts
        return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)

    def flatten(self, roots: Iterable[type | str]) -> dict[str, str]:
        """Generated files ``{"modeling_delay.py": text, ...}`` for the closure of ``roots`` (classes or modules)."""
        self._modules, self._dotted_by_flat = {}, {}
        entry = sorted({self.module_of(r) for r in roots})
        if not entry:
            raise FlattenError("nothing to flatten: no root classes or modules given")
        pending = []
        for dotted in entry:
            self._check_exportable(dotted, where=None)
            if self._is_package(dotted):
                raise FlattenError(f"{self.package_name}.{dotted} is a package; export classes defined in its modules")
            pending.append(self._register(dotted))
        while pending:
            dotted = self._dotted_by_flat[pending.pop()]
            if dotted not in self._modules:
                self._modules[dotted] = module = self._load(dotted)
                pending.extend(sorted(module.direct_dependencies))
        graph = {m.flat_name: m.direct_dependencies for m in self._modules.values()}
        files = {}
        for dotted in sorted(self._modules):
            module = self._modules[dotted]
            text = self._render(module)
            seen_by_loader = self._check_loader_view(module, text)
            if dotted in entry:
                text = _with_trailer(text, sorted(_reachable(module.flat_name, graph) - seen_by_loader))
            files[module.flat_name + ".py"] = text
        return dict(sorted(files.items()))

    def entry_reference(self, cls: type) -> str:
        """``auto_map`` value for a class: ``"modeling_delay.DelayForConditionalGeneration"``."""
        return f"{flat_module_name(self.module_of(cls))}.{cls.__name__}"

    # --------------------------------------------------------------------------------------------------- analysis
    def _path_of(self, dotted: str) -> Path:
        base = self.package_root.joinpath(*dotted.split("."))
        if base.with_suffix(".py").is_file():
            return base.with_suffix(".py")
        if (base / "__init__.py").is_file():
            return base / "__init__.py"
        raise FileNotFoundError(f"no module {self.package_name}.{dotted} under {self.package_root}")

    def _is_package(self, dotted: str) -> bool:
        return self._path_of(dotted).name == "__init__.py"

    def _check_exportable(self, dotted: str, where: str | None) -> None:
        if dotted.split(".")[0] not in self.subpackages:
            place = f"{where} imports" if where else "asked to export"
            raise FlattenError(
                f"{place} {self.package_name}.{dotted}, which is outside the exported subpackages "
                f"{', '.join(self.subpackages)}; model/processor code must not depend on it"
            )

    def _location(self, path: Path, node: ast.AST) -> str:
        return f"{path.relative_to(self.package_root).as_posix()}:{node.lineno}"

    def _load(self, dotted: str) -> _Module:
        path = self._path_of(dotted)
        source = path.read_text(encoding="utf-8")
        module = _Module(dotted, path, source)
        package = dotted if path.name == "__init__.py" else dotted.rpartition(".")[0]
        for node in ast.walk(ast.parse(source, filename=str(path))):
            where = None
            if isinstance(node, ast.Import) and any(
                a.name == self.package_name or a.name.startswith(self.package_name + ".") for a in node.names
            ):
                where = self._location(path, node)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                if node.module == self.package_name or node.module.startswith(self.package_name + "."):
                    where = self._location(path, node)
            if where:
                raise FlattenError(
                    f"{where} imports {self.package_name} absolutely; use a relative import "
                    "(`from ..configuration.x import Y`) so that the code can be flattened"
                )
            if isinstance(node, ast.ImportFrom) and node.level > 0:
                module.rewrites.append((node, self._resolve(node, package, path)))
        module.rewrites.sort(key=lambda item: (item[0].lineno, item[0].col_offset))
        return module

    def _resolve(self, node: ast.ImportFrom, package: str, path: Path) -> list[tuple[str, _Names]]:
        where = self._location(path, node)
        parts = package.split(".") if package else []
        if node.level - 1 > len(parts):
            raise FlattenError(f"{where}: relative import beyond the top of the {self.package_name} package")
        base = parts[: len(parts) - (node.level - 1)]
        if node.module is None:
            raise FlattenError(
                f"{where}: `from {'.' * node.level} import ...` cannot be flattened (transformers only follows "
                "`from .module import Name`); import the names from their module instead"
            )
        dotted = ".".join(base + node.module.split("."))
        self._check_exportable(dotted, where)
        names = [(a.name, a.asname) for a in node.names]
        if any(name == "*" for name, _ in names):
            raise FlattenError(f"{where}: star imports cannot be flattened; import the names explicitly")
        if not self._is_package(dotted):
            return [(self._register(dotted), names)]
        # A name re-exported by a subpackage __init__: import it from the module that defines it.
        exports = self._exports_of_init(dotted)
        grouped: dict[str, _Names] = {}
        for name, asname in names:
            if name not in exports:
                raise FlattenError(
                    f"{where}: {self.package_name}.{dotted} does not re-export {name!r} with `from .module import "
                    f"{name}`; import it from the module that defines it"
                )
            target, original = exports[name]
            grouped.setdefault(target, []).append(
                (original, asname if asname else (name if original != name else None))
            )
        return [(self._register(target), grouped[target]) for target in sorted(grouped)]

    def _register(self, dotted: str) -> str:
        """The flat name of a module to export; refuses two modules that would get the same one."""
        self._check_exportable(dotted, where=None)
        flat = flat_module_name(dotted)
        previous = self._dotted_by_flat.setdefault(flat, dotted)
        if previous != dotted:  # e.g. modeling/a_b.py and modeling/a/b.py
            raise FlattenError(f"{previous} and {dotted} would both be flattened to {flat}.py; rename one of them")
        return flat

    def _exports_of_init(self, package: str) -> dict[str, tuple[str, str]]:
        """``{exported name: (defining module, name there)}`` from a subpackage ``__init__``'s ``from .x import``."""
        if package not in self._init_exports:
            path = self._path_of(package)
            exports: dict[str, tuple[str, str]] = {}
            for node in ast.parse(path.read_text(encoding="utf-8"), filename=str(path)).body:
                if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
                    target = f"{package}.{node.module}"
                    for alias in node.names:
                        if self._is_package(target):  # re-export of a re-export
                            exports[alias.asname or alias.name] = self._exports_of_init(target)[alias.name]
                        else:
                            exports[alias.asname or alias.name] = (target, alias.name)
            self._init_exports[package] = exports
        return self._init_exports[package]

    # -------------------------------------------------------------------------------------------------- rendering
    def _check_loader_view(self, module: _Module, text: str) -> set[str]:
        """The flat modules that transformers' loader sees ``text`` import; each must be one that we generate.

        The loader scans the raw text with a regex (docstrings and comments included) rather than the syntax tree.
        """
        seen = set()
        for match in _LOADER_IMPORT_PATTERN.finditer(text):
            name = match.group(1) or match.group(2)
            if name not in self._dotted_by_flat:
                line = text.count("\n", 0, match.start()) + 1
                raise FlattenError(
                    f"{module.path.relative_to(self.package_root).as_posix()}: transformers' remote-code loader reads "
                    f"`{match.group(0).strip()}` (line {line} of the generated {module.flat_name}.py) as a relative "
                    "import, since it scans the raw text (docstrings included), but no such module is generated; "
                    "reword that line"
                )
            seen.add(name)
        return seen

    def _render(self, module: _Module) -> str:
        text = module.source
        line_starts = _line_start_offsets(text)
        edits = []
        for node, targets in module.rewrites:
            start = _char_offset(text, line_starts, node.lineno, node.col_offset)
            end = _char_offset(text, line_starts, node.end_lineno, node.end_col_offset)
            line_prefix = text[line_starts[node.lineno - 1] : start]
            indent = line_prefix if not line_prefix.strip() else None
            statements = [_format_import(flat, names, len(line_prefix)) for flat, names in targets]
            joiner = ("\n" + indent) if indent is not None else "; "
            edits.append((start, end, joiner.join(statements)))
        for start, end, replacement in sorted(edits, reverse=True):
            text = text[:start] + replacement + text[end:]
        source = module.path.relative_to(self.package_root).as_posix()
        header = self.header.replace("{source}", f"{self.package_name}/{source}")
        return header + text


def _reachable(start: str, graph: dict[str, set[str]]) -> set[str]:
    """Every node reachable from ``start`` (itself excluded)."""
    seen: set[str] = set()
    stack = list(graph[start])
    while stack:
        name = stack.pop()
        if name not in seen and name != start:
            seen.add(name)
            stack.extend(graph[name])
    return seen


def _line_start_offsets(text: str) -> list[int]:
    starts = [0]
    for match in re.finditer("\n", text):
        starts.append(match.end())
    return starts


def _char_offset(text: str, line_starts: list[int], lineno: int, byte_col: int) -> int:
    """ast columns count UTF-8 bytes; convert to a character offset into ``text``."""
    start = line_starts[lineno - 1]
    line = text[start : line_starts[lineno] if lineno < len(line_starts) else len(text)]
    return start + len(line.encode("utf-8")[:byte_col].decode("utf-8"))


def _format_import(flat: str, names: _Names, indent: int) -> str:
    items = [f"{name} as {asname}" if asname and asname != name else name for name, asname in names]
    one_line = f"from .{flat} import {', '.join(items)}"
    if indent + len(one_line) <= _MAX_LINE:
        return one_line
    pad = " " * (indent + 4)
    body = "".join(f"{pad}{item},\n" for item in items)
    return f"from .{flat} import (\n{body}{' ' * indent})"


def _with_trailer(text: str, dependencies: list[str]) -> str:
    if not dependencies:
        return text
    lines = [
        "# Generated: transformers 5.0 copies only the files that an entry module imports directly when it loads a",
        "# local folder, so the modules this one needs indirectly are named here as well.",
    ]
    lines += [f"from .{dep} import __name__ as {_TRAILER_ALIAS}  # noqa: E402, F401" for dep in dependencies]
    lines.append(f"del {_TRAILER_ALIAS}")
    return text.rstrip("\n") + "\n\n\n" + "\n".join(lines) + "\n"
