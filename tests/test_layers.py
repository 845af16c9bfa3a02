"""The package's layers, lowest first, and the rule that no module imports a higher layer.

Every import of a ``dnerv_fast`` module counts, at module level or inside a function. A new
module must be placed in a layer here; the folder layout follows the layers.
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "dnerv_fast"

# (layer, module prefixes); a module belongs to the layer of its longest matching prefix.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("plumbing", ("errors", "validation", "options", "option_names", "progress", "atomic",
                  "printable", "locks",
                  "allocator", "precision",
                  "devices")),
    ("basics", ("configs", "embedding", "schedule", "tiling", "metrics")),
    ("media", ("media",)),
    ("ops", ("ops", "kernels", "csrc")),
    ("model", ("model",)),
    ("clips", ("clips",)),
    ("train", ("train",)),
    ("codec", ("codec",)),
    ("profiling", ("profiling",)),
    ("applications", ("dataset", "demo", "cli", "__init__")),
]


def layer_of(module: str) -> int:
    best, rank = -1, None
    for i, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, rank = len(prefix), i
    assert rank is not None, f"dnerv_fast.{module} is in no layer of tests/test_layers.py"
    return rank


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> set[str]:
    """The dnerv_fast modules ``path`` imports (names relative to the package)."""
    own = _module_name(path).split(".")
    package = own if path.name == "__init__.py" else own[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name.removeprefix("dnerv_fast.") for a in node.names
                      if a.name.startswith("dnerv_fast.")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            elif node.module and (node.module == "dnerv_fast" or node.module.startswith("dnerv_fast.")):
                target = node.module.removeprefix("dnerv_fast").lstrip(".")
            else:
                continue
            for alias in node.names:     # `from . import ops` names a module
                name = f"{target}.{alias.name}" if target else alias.name
                found.add(name if (PACKAGE / name.replace(".", "/")).exists()
                          or (PACKAGE / (name.replace(".", "/") + ".py")).exists() else target)
    found.discard("")
    return found


def test_no_module_imports_a_higher_layer():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = _module_name(path)
        if name == "__init__":
            continue          # the package namespace re-exports, lazily, from every layer
        mine = layer_of(name)
        for target in sorted(imports(path)):
            if layer_of(target) > mine:
                wrong.append(f"{name} ({LAYERS[mine][0]}) imports {target} "
                             f"({LAYERS[layer_of(target)][0]})")
    assert not wrong, "\n".join(wrong)


def test_the_checker_sees_relative_and_function_imports(tmp_path):
    assert layer_of("codec.pipeline") > layer_of("train.trainer") > layer_of("clips.data")
    assert "errors" in imports(PACKAGE / "cli.py") and "codec.commands" not in imports(PACKAGE / "ops" / "__init__.py")
