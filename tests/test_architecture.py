"""The package's imports run one way, down the declared layers, with no cycle (function-level imports
count); and no test assertion that can never fail."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "src" / "vaelab"
# Top to bottom is the direction of flow; a module may import its own layer (without a cycle) or those above.
LAYERS = [
    ("vaelab", "vaelab.errors", "vaelab.fileio", "vaelab.distributions", "vaelab.ranking", "vaelab.embedding", "vaelab.clusters",
     "vaelab.tsne", "vaelab.conformal"),
    ("vaelab.config",),
    ("vaelab.runtime",),
    ("vaelab.checkpoint",),
    ("vaelab.data",),
    ("vaelab.models",),
    ("vaelab.training",),
    ("vaelab.scores",),
    ("vaelab.detectors",),
    ("vaelab.evaluation",),
    ("vaelab.plots",),
    ("vaelab.experiments",),
    ("vaelab.report",),
    ("vaelab.arguments",),
    ("vaelab.cli", "vaelab.__main__"),
]


def modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = ("vaelab", *path.relative_to(ROOT).with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def layer(module: str) -> int:
    best = None
    for i, names in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and (best is None or len(name) > len(best[1])):
                best = (i, name)
    assert best is not None, f"{module} is in no declared layer"
    return best[0]


def imports(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Every vaelab module that ``module`` imports, at module level or inside functions."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            names = [f"{base}.{a.name}" for a in node.names] + [base]
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module and name.startswith("vaelab"):
                found.add(name)
    # a package's face may import its own children
    return {t for t in found if not (path.name == "__init__.py" and t.startswith(module + "."))}


def graph() -> dict[str, set[str]]:
    known = modules()
    return {m: imports(m, p, known) for m, p in known.items()}


def test_every_module_sits_in_a_layer_and_imports_only_its_own_or_lower_ones():
    upward = [f"{m} -> {t}" for m, targets in graph().items() for t in targets if layer(t) > layer(m)]
    assert not upward, "imports against the flow: " + "; ".join(sorted(upward))


def test_there_is_no_import_cycle():
    g = graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in g[node]:
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for node in g:
        if node not in state:
            visit(node, [node])
    assert not cycles, "import cycles: " + "; ".join(cycles)


def test_the_check_sees_a_function_level_import(tmp_path):
    known = {"vaelab.a": tmp_path / "a.py", "vaelab.b": tmp_path / "b.py"}
    known["vaelab.a"].write_text("def f():\n    from vaelab.b import thing\n")
    assert imports("vaelab.a", known["vaelab.a"], known) == {"vaelab.b"}
    assert layer("vaelab.detectors.fusion") < layer("vaelab.experiments.units") < layer("vaelab.cli")


def test_no_assertion_can_never_fail():
    """An assert whose message is a condition (``assert a, b == c``) or whose test is a tuple never checks
    what it seems to; this scans every test module for both."""
    bad = []
    for path in Path(__file__).resolve().parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Assert):
                continue
            msg = node.msg
            hidden = isinstance(msg, (ast.Compare, ast.BoolOp)) or (isinstance(msg, ast.UnaryOp)
                                                                   and isinstance(msg.op, ast.Not))
            if hidden or isinstance(node.test, ast.Tuple):
                bad.append(f"{path.name}:{node.lineno}")
    assert not bad, bad


def test_tests_mirror_the_package():
    """Every module ``src/vaelab/a/b.py`` has its test module ``tests/a/test_b.py``."""
    tests = Path(__file__).resolve().parent
    missing = [str(p.relative_to(ROOT)) for p in ROOT.rglob("*.py") if p.name not in ("__init__.py", "__main__.py")
               and not (tests / p.relative_to(ROOT).parent / f"test_{p.name}").exists()]
    assert not missing, f"modules without a test module: {missing}"
