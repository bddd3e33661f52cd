"""The allowed direction between the packages, read from the imports of every module (with `ast`, nothing is
imported), so that a new back edge fails here instead of becoming an import loop later.

The rule (README, "Package direction"): `core` = `empathy/` without its commands, plus every package's
`settings.py` (pydantic fields only). selection -> core; training -> selection, core; ui -> core;
serve -> ui (it mounts the UI), core; the commands of `empathy/` (cli, up, config) may import anything.
serve and training never import each other: what both need (the vLLM engine, the base model, the artifact
layout, the router and its features, mean_ci, the MoE artifact and its LoRA packing) is in core.
KNOWN_BACK_EDGES lists the edges that break the rule, each with where it should go (none today); the list may
only shrink (a fixed edge that is still listed fails too, so the list stays true).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("empathy", "selection", "training", "serve", "ui")
APP_MODULES = {"empathy.cli", "empathy.__main__", "empathy.config_cmd", "empathy.up"}
ALLOWED = {
    "core": {"core"},
    "selection": {"core", "selection"},
    "training": {"core", "selection", "training"},
    "ui": {"core", "ui"},
    "serve": {"core", "ui", "serve"},
    "app": {"core", "selection", "training", "ui", "serve", "app"},
}
KNOWN_BACK_EDGES: dict[tuple[str, str], str] = {}  # (module, import) -> where it should move


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> str:
    top, _, rest = module.partition(".")
    if rest == "settings":
        return "core"
    if top == "empathy":
        return "app" if module in APP_MODULES else "core"
    return top


def is_module(name: str) -> bool:
    base = REPO.joinpath(*name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def imported(tree: ast.AST) -> Iterator[str]:
    """Every project module a module imports, at any depth (function-level imports too)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            subs = [f"{node.module}.{alias.name}" for alias in node.names]
            found = [name for name in subs if is_module(name)]
            yield from found or [node.module]


def project_edges() -> set[tuple[str, str]]:
    edges = set()
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            source = module_name(path)
            for target in imported(ast.parse(path.read_text(), filename=str(path))):
                if target.split(".")[0] in PACKAGES and layer(target) != layer(source):
                    edges.add((source, target))
    return edges


def back_edges(edges: set[tuple[str, str]]) -> set[tuple[str, str]]:
    return {(s, t) for s, t in edges if layer(t) not in ALLOWED[layer(s)]}


def test_the_rule_reads_modules_right() -> None:
    assert layer("serve.settings") == "core" and layer("empathy.engine") == "core"
    assert layer("empathy.up") == "app" and layer("training.router.fit") == "training"
    loop = ("serve.lifecycle", "training.base_model")
    assert back_edges({loop}) == {loop}
    assert not back_edges({("training.engine", "empathy.engine"), ("empathy.up", "serve.cli")})
    assert ("serve.app", "ui.app") in project_edges()  # a function-level import counts


def test_no_new_back_edge() -> None:
    new = sorted(back_edges(project_edges()) - set(KNOWN_BACK_EDGES))
    assert not new, (
        "imports against the package direction (README, 'Package direction'): "
        + "; ".join(f"{s} -> {t}" for s, t in new)
        + ". Move what both sides need into core (empathy/), or import in the allowed direction."
    )


def test_known_back_edges_still_exist() -> None:
    fixed = sorted(set(KNOWN_BACK_EDGES) - back_edges(project_edges()))
    assert not fixed, ("these back edges are gone; remove them from KNOWN_BACK_EDGES in "
                       f"tests/empathy/test_import_direction.py: {fixed}")
