"""Imports flow one way: slide -> tiles -> detections -> patches -> classes, masks -> outputs.

Each package of glomkit has a layer; a module may import its own layer and those below, never
one above. Training packages never import the pipeline, and the inference path imports no torch.
The one exception is named here (``HOOKS``): a detector kind's file (``glomkit.kinds``) imports the
shared training code (sampling, losses, the loop) inside its training functions only, so that a
kind is one file (its decoding, metadata schema, network and trainer) while ``glomkit run`` loads
no training code.
"""

from __future__ import annotations

import ast
import functools
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

LAYERS = {
    "": 0,  # glomkit/__init__.py: the error type and the lazy public names
    "core": 0,
    "progress": 0,
    "io": 1,
    "slide": 1,
    "models": 1,
    "kinds": 1,  # detector kinds: decode + metadata schema + hooks to their network and trainer
    "nets": 1,  # the torch networks (imported by training code and the kinds' network hooks)
    "eval": 1,  # metrics only (the study runners live in glomkit.studies)
    "infer": 2,
    "review": 2,
    "synth": 2,
    "pipeline": 3,
    "results": 3,
    "roi": 3,
    "detect": 3,
    "classify": 3,
    "segment": 3,
    "ssl": 3,
    "train": 3,
    "data": 3,
    "mine": 3,
    "cluster": 3,
    "studies": 3,
    "api": 4,
    "cohort": 4,
    "evaluate_images": 4,
    "_cli": 5,
    "cli": 5,
}
TRAINING = {"detect", "classify", "segment", "ssl", "train", "data", "mine", "cluster", "studies"}
PIPELINE = {"pipeline", "results", "roi"}
# the lazy public names in glomkit/__init__.py are looked up by name, not imported at module level
LAZY_OK = {""}
# (package, target package): allowed upward only inside a function (a kind's train hook)
HOOKS = {("kinds", "detect"), ("kinds", "segment")}


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


@functools.cache
def _all_imports() -> tuple[tuple[str, str, int, bool], ...]:
    """(module, imported module, line, inside a function) of every glomkit import, parsed once."""
    out = []
    for path in sorted((SRC / "glomkit").rglob("*.py")):
        mod = ".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
        tree = ast.parse(path.read_text(encoding="utf-8"))
        nested = {
            id(n)
            for f in ast.walk(tree)
            if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
            for n in ast.walk(f)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "glomkit":
                targets = [node.module]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.split(".")[0] == "glomkit"]
            else:
                continue
            out.extend((mod, t, node.lineno, id(node) in nested) for t in targets)
    return tuple(out)


def _imports(in_functions: bool | None = None) -> list[tuple[str, str, int]]:
    """(module, imported module, line) of every glomkit import; ``in_functions``: only those inside
    (True) or outside (False) a function body."""
    return [(m, t, n) for m, t, n, inside in _all_imports() if in_functions is None or inside == in_functions]


def test_every_package_has_a_layer():
    packages = {_package(m) for m, _, _ in _imports()}
    assert packages <= set(LAYERS), f"give these packages a layer: {sorted(packages - set(LAYERS))}"


def test_no_import_runs_back_up_the_layers():
    up = []
    lazy = set(_imports(in_functions=True))
    for mod, target, line in _imports():
        a, b = _package(mod), _package(target)
        if a in LAZY_OK or a == b:
            continue
        if (a, b) in HOOKS and (mod, target, line) in lazy:
            continue
        if LAYERS[b] > LAYERS[a]:
            up.append(f"{mod}:{line} imports {target} (layer {LAYERS[a]} -> {LAYERS[b]})")
        if a in TRAINING and b in PIPELINE:
            up.append(f"{mod}:{line} (training) imports {target} (the pipeline)")
    assert not up, "\n".join(up)


def test_the_hook_exception_is_only_inside_functions():
    """A kind's module-level imports obey the layers like every other module's."""
    top = [(m, t, n) for m, t, n in _imports(in_functions=False) if (_package(m), _package(t)) in HOOKS]
    assert not top, top


def test_the_inference_path_imports_no_torch():
    code = (
        "import sys, glomkit, glomkit.api, glomkit.pipeline, glomkit.cohort, glomkit.kinds; "
        "glomkit.kinds.kinds(); import glomkit.infer.characterise, glomkit.results, glomkit.roi; "
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
