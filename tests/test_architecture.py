"""The layers of docs/ARCHITECTURE.md, checked on the import graph of the product's source (parsed, not imported).

pack (custom_nodes/ethmumbai) <- driver (avatar_driver) <- adapter (worker) <- tools (workflows, training,
benchmarks, scripts, tools). An import may only point at the same or a lower layer; the pack imports nothing of the
repo (it must install alone into an artist's ComfyUI), the driver only the pack's public errors; no product code
imports tests/, and there are no import cycles between modules.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from avatar_driver.paths import REPO_ROOT

LAYERS = {"custom_nodes": 0, "avatar_driver": 1, "worker": 2,
          "workflows": 3, "training": 3, "benchmarks": 3, "scripts": 3, "tools": 3}
REPO_PACKAGES = set(LAYERS) | {"tests"}
DRIVER_MAY_IMPORT_FROM_PACK = {"custom_nodes.ethmumbai.core.errors"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Absolute names of every repo module ``path`` imports, at any depth (lazy imports in functions included)."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            # `from pkg import mod` names a module when pkg/mod.py exists, else an attribute of pkg.
            names = [f"{base}.{alias.name}" if _exists(f"{base}.{alias.name}") else base for alias in node.names]
        else:
            continue
        found |= {name for name in names if name.split(".")[0] in REPO_PACKAGES}
    return found


def _exists(module: str) -> bool:
    path = REPO_ROOT.joinpath(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _graph() -> dict[str, set[str]]:
    files = [p for top in LAYERS for p in (REPO_ROOT / top).rglob("*.py")]
    return {_module_name(path): _imports(path) for path in files}


GRAPH = _graph()


def test_the_graph_covers_the_product():
    assert {"worker.handler", "avatar_driver.contract", "custom_nodes.ethmumbai.core.errors",
            "workflows.convert", "training.train", "benchmarks.worker_overhead", "tools.worker_server"} <= GRAPH.keys()
    assert "avatar_driver.contract" in GRAPH["worker.handler"]


def test_imports_point_to_the_same_or_a_lower_layer():
    upward = [f"{module} -> {target}" for module, targets in GRAPH.items() for target in targets
              if target.split(".")[0] != "tests" and LAYERS[target.split(".")[0]] > LAYERS[module.split(".")[0]]]
    assert upward == []


def test_the_pack_imports_nothing_of_the_repo():
    outside = [f"{module} -> {target}" for module, targets in GRAPH.items() if module.startswith("custom_nodes.")
               for target in targets if not target.startswith("custom_nodes.ethmumbai")]
    assert outside == []


def test_the_driver_imports_only_the_packs_public_errors():
    pack = [f"{module} -> {target}" for module, targets in GRAPH.items() if module.startswith("avatar_driver")
            for target in targets if target.startswith("custom_nodes") and target not in DRIVER_MAY_IMPORT_FROM_PACK]
    assert pack == []


def test_no_product_code_imports_tests():
    assert [f"{module} -> {target}" for module, targets in GRAPH.items() for target in targets
            if target.split(".")[0] == "tests"] == []


def test_no_shell_script_or_image_step_uses_tests():
    scripts = [p for top in LAYERS for p in (REPO_ROOT / top).rglob("*.sh")] + [REPO_ROOT / "Dockerfile"]
    uses = [f"{p.relative_to(REPO_ROOT)}: {line.strip()}" for p in scripts for line in p.read_text().splitlines()
            if re.search(r"\btests[./]", line) and not line.lstrip().startswith("#")]  # comments may cite a test
    assert uses == []


def test_no_import_cycles():
    cycles, state = [], {}  # state: 1 on the current path, 2 done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(GRAPH.get(module, ())):
            if state.get(target) == 1:
                cycles.append(" -> ".join(path[path.index(target):] + [target]))
            elif target in GRAPH and target not in state:
                visit(target, path + [target])
        state[module] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])
    assert cycles == []
