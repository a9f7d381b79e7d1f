"""The package's layering, checked by reading every module's imports (no module is run):
app -> ui -> cases -> eval -> engine, and nothing imports a layer above its own.

The engine is adafuse/*.py (with render.py, the Trace renderers ui/ and cases/ share); eval, cases
and ui are the sub-packages. `python -m adafuse eval|cases` reaches the layers above by module name
(adafuse/cli.py, DELEGATED), which is no import."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "adafuse"
LAYERS = ["engine", "eval", "cases", "ui"]   # each may import only the layers before it


def layer_of(module: str) -> str:
    """'adafuse.cases.report' -> 'cases'; any engine module ('adafuse.decode') -> 'engine'."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else "engine"


def imported_modules(path: Path) -> set[str]:
    """Absolute names of the adafuse modules `path` imports, at its top or inside a function."""
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = module.split(".")[:-1]   # for a/b/__init__.py too: its module is a.b.__init__
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            name = ".".join(base + ([node.module] if node.module else []))
            # the imported name may be a module (`from .. import render`) or an attribute: either
            # way it lies in the layer of `name`'s package, which layer_of reads
            out.update(f"{name}.{a.name}" for a in node.names)
    return {m for m in out if m == "adafuse" or m.startswith("adafuse.")}


def test_layer_of():
    assert [layer_of(m) for m in ("adafuse.decode", "adafuse.render", "adafuse.eval.runner",
                                  "adafuse.cases", "adafuse.cases.report", "adafuse.ui.charts")] == \
        ["engine", "engine", "eval", "cases", "cases", "ui"]


def test_no_module_imports_a_layer_above_its_own():
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        own = LAYERS.index(layer_of(".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)))
        for name in imported_modules(path):
            if LAYERS.index(layer_of(name)) > own:
                bad.append(f"{path.relative_to(PACKAGE.parent)} imports {name}")
    assert not bad, "\n".join(bad)


def test_the_scan_sees_relative_imports():
    # cases/report.py draws traces with the shared renderers: seen as the engine-level module
    assert "adafuse.render" in imported_modules(PACKAGE / "cases" / "report.py")
    assert "adafuse.cases.report" in imported_modules(PACKAGE / "ui" / "cases.py")
    assert "adafuse.trace.Trace" in imported_modules(PACKAGE / "decode.py")
