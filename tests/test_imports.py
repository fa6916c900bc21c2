"""The package has no import circle (issue 17): a module imported at load time by a
module it imports breaks as soon as either moves a name, and hides which one is the
lower layer. Lazy imports inside functions (kept for start-up time) are not load-time."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "fairbig"


def _modules() -> dict[str, Path]:
    mods = {}
    for f in PKG.rglob("*.py"):
        parts = list(f.relative_to(PKG.parent).with_suffix("").parts)
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return mods


def _load_time_imports(name: str, path: Path, mods: dict[str, Path]) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    deps = set()
    for node in ast.parse(path.read_text()).body:  # top level only; `if TYPE_CHECKING` skipped
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - node.level + 1] \
                if node.level else []
            mod = ".".join(base + ([node.module] if node.module else []))
            for alias in node.names:
                sub = f"{mod}.{alias.name}"
                deps.add(sub if sub in mods else mod)
        elif isinstance(node, ast.Import):
            deps.update(alias.name for alias in node.names)
    return {d for d in deps if d in mods and d != name}


def test_no_import_circle():
    mods = _modules()
    graph = {name: _load_time_imports(name, path, mods) for name, path in mods.items()}
    assert "fairbig.errors" in graph["fairbig.gpg"]  # the reading sees relative imports
    done: set[str] = set()
    circles = []

    def visit(node: str, path: list[str]) -> None:
        for dep in sorted(graph[node]):
            if dep in path:
                circles.append(" -> ".join([*path[path.index(dep):], dep]))
            elif dep not in done:
                done.add(dep)
                visit(dep, [*path, dep])

    for name in sorted(graph):
        if name not in done:
            done.add(name)
            visit(name, [name])
    assert circles == []
