"""The package's floor plan, read from the imports: layers only import downward, no module
imports itself in a circle, and the scorer never imports TensorFlow, MLflow or Prefect.

    contract -> serving -> sign_model -> flows -> cli

Every import counts, including those inside functions (the CLI's lazy imports included), so an
upward import cannot hide in a function body. Research scripts are never imported by the package.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "sign_mlops"
LAYERS = ("contract", "serving", "sign_model", "flows", "cli")
HEAVY = ("tensorflow", "keras", "tf2onnx", "mlflow", "prefect", "prefect_dask", "distributed", "dask", "pandera",
         "matplotlib", "sklearn", "scipy", "onnx")
# what each layer may import from outside the standard library and the layers below it
FORBIDDEN = {
    "contract": HEAVY + ("onnxruntime",),
    "serving": HEAVY,
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module named by an import statement anywhere in the file."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "sign_mlops" and parts[1] in LAYERS else None


MODULES = {_module_name(p): _imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


def test_every_module_belongs_to_a_layer():
    strays = [m for m in MODULES if m != "sign_mlops" and _layer(m) is None]
    assert not strays, f"modules outside the layers {LAYERS}: {strays}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _layer(m)))
def test_imports_only_run_downward(module):
    own = LAYERS.index(_layer(module))
    upward = sorted(name for name in MODULES[module] if _layer(name) and LAYERS.index(_layer(name)) > own)
    assert not upward, f"{module} ({LAYERS[own]}) imports from a higher layer: {upward}"


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_lower_layers_stay_light(layer):
    heavy = {module: sorted(n for n in names if n.split(".")[0] in FORBIDDEN[layer])
             for module, names in MODULES.items() if _layer(module) == layer}
    heavy = {module: names for module, names in heavy.items() if names}
    assert not heavy, f"the {layer} layer imports {heavy}"


def test_nothing_imports_research_benchmarks_or_tests():
    bad = {m: sorted(n for n in names if n.split(".")[0] in ("research", "benchmarks", "tests"))
           for m, names in MODULES.items()}
    assert not {m: n for m, n in bad.items() if n}


def test_no_import_cycles_between_modules():
    """Module-level imports only (a function-level import runs later and cannot deadlock import)."""
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        module = _module_name(path)
        top = set()
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("sign_mlops"):
                top.add(node.module)
                top.update(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                top.update(a.name for a in node.names if a.name.startswith("sign_mlops"))
        graph[module] = {n for n in top if n in MODULES and n != module}
    visiting, done = [], set()

    def visit(node: str) -> None:
        if node in done:
            return
        assert node not in visiting, f"import cycle: {' -> '.join(visiting[visiting.index(node):] + [node])}"
        visiting.append(node)
        for nxt in graph[node]:
            visit(nxt)
        visiting.pop()
        done.add(node)

    for module in graph:
        visit(module)


def test_the_scorer_imports_no_heavy_library_at_run_time():
    """Importing the scorer and the registry client in a fresh interpreter loads none of them."""
    import subprocess
    import sys

    code = ("import sys, sign_mlops.serving.scorer, sign_mlops.serving.model, sign_mlops.serving.inbox, "
            "sign_mlops.serving.distributed; "
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_scoring_a_file_model_does_not_import_mlflow(tmp_path, onnx_model_path):
    """`sign-mlops score x.csv --model m.onnx` in the full install: MLflow (0.9 CPU s to import)
    stays unimported; it is only the fallback for registry stores the light client cannot read."""
    import subprocess
    import sys

    code = ("import sys; from sign_mlops.flows.model_source import load_scoring_model; "
            f"load_scoring_model({str(onnx_model_path)!r}, __import__('pathlib').Path({str(tmp_path)!r})); "
            "print('mlflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "False"
