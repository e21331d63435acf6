"""The import rule (docs/architecture.md): a module imports only its own layer or the layers below;
service and ops never import each other. Imports are read with ast (function-level ones too)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "voicelane"

# lowest first; a module is in the layer of the longest prefix listed here
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "foundation",
        (
            "voicelane",
            "voicelane.errors",
            "voicelane.fsutil",
            "voicelane.paths",
            "voicelane.protocol",
            "voicelane.status",
            "voicelane.runspec",
            "voicelane.weights",
            "voicelane.compat_shapes",
            "voicelane.lifeline",
        ),
    ),
    ("engine", ("voicelane.engine",)),
    (
        "domain",
        (
            "voicelane.dataset",
            "voicelane.bundle",
            "voicelane.evaluate",
            "voicelane.selection",
            "voicelane.speak",
            "voicelane.registry",
        ),
    ),
    ("lane", ("voicelane.lane", "voicelane.progress", "voicelane.demo", "voicelane.base_voice")),
    ("runner", ("voicelane.runner",)),
    ("apps", ("voicelane.service", "voicelane.ops")),
    ("entry", ("voicelane.cli", "voicelane.__main__")),
]
# the two apps share a layer but never import each other
SEPARATE = ("voicelane.service", "voicelane.ops")
# known exceptions, each with the reason it is still there
EXCEPTIONS: set[tuple[str, str]] = set()


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def layer_of(name: str) -> int:
    best, best_len = None, -1
    for rank, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if _within(name, prefix) and len(prefix) > best_len:
                best, best_len = rank, len(prefix)
    assert best is not None, f"{name} is in no layer: add it to LAYERS (tests/test_architecture.py)"
    return best


def imports_of(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from voicelane import bundle` imports the module voicelane.bundle
            found |= {f"{node.module}.{a.name}" if node.module == "voicelane" else node.module for a in node.names}
    return {n for n in found if _within(n, "voicelane")}


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def violations() -> list[str]:
    bad = []
    for name, path in all_modules().items():
        for target in sorted(imports_of(path)):
            if (name, target) in EXCEPTIONS:
                continue
            mine, theirs = layer_of(name), layer_of(target)
            if theirs > mine:
                bad.append(f"{name} ({LAYERS[mine][0]}) imports {target} ({LAYERS[theirs][0]})")
            for a, b in (SEPARATE, SEPARATE[::-1]):
                if _within(name, a) and _within(target, b):
                    bad.append(f"{name} imports {target}: service and ops never import each other")
    return bad


def test_every_module_has_a_layer():
    for name in all_modules():
        layer_of(name)


def test_no_module_imports_a_layer_above_it():
    assert violations() == []


@pytest.mark.parametrize(
    "module, target, why",
    [
        ("voicelane.engine.train", "voicelane.evaluate", "layer above"),
        ("voicelane.service.core.jobs", "voicelane.ops.common", "service and ops"),
        ("voicelane.ops.verify", "voicelane.service.main", "service and ops"),
    ],
)
def test_the_rule_catches_what_it_should(tmp_path, monkeypatch, module, target, why):
    """The checker itself: a planted import is reported."""
    planted = tmp_path / "src" / Path(*module.split(".")).with_suffix(".py")
    planted.parent.mkdir(parents=True)
    planted.write_text(f"def f():\n    import {target}\n")
    this = sys.modules[__name__]
    monkeypatch.setattr(this, "SRC", tmp_path / "src")
    monkeypatch.setattr(this, "PACKAGE", tmp_path / "src" / "voicelane")
    found = violations()
    assert len(found) == 1 and target in found[0] and (why == "layer above" or "never import" in found[0])
