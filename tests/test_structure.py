"""The package's shape: a library free of Hydra and of benchmarks, and an import graph without cycles."""
import ast
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

PACKAGE = REPO / "bnrepro"
# Only the config module knows Hydra (the benchmarks, which compose configs through it, are scripts).
HYDRA_SIDE = {"bnrepro.config"}


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def test_the_library_imports_neither_hydra_nor_omegaconf():
    library = sorted(set(modules()) - HYDRA_SIDE)
    assert {"bnrepro.nn.bn", "bnrepro.models", "bnrepro.data", "bnrepro.tracking.probes",
            "bnrepro.training.session"} <= set(library)
    code = (f"import importlib, sys\nfor m in {library!r}: importlib.import_module(m)\n"
            "print(sorted(m for m in ('hydra', 'omegaconf') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_benchmarks_live_outside_the_library():
    assert not [m for m in modules() if "bench" in m.rsplit(".", 1)[-1]]
    assert (REPO / "scripts" / "bench.py").exists() and (REPO / "scripts" / "bench_conv.py").exists()


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The bnrepro modules `name` imports anywhere in its file (functions included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from pkg import sub` imports the module pkg.sub when there is one, else pkg itself.
            targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module
                       for a in node.names]
        else:
            continue
        found |= {t for t in targets if t in known and t != name}
    return found


def test_the_import_graph_has_no_cycle():
    known = modules()
    graph = {name: imports(name, path, set(known)) for name, path in known.items()}
    assert graph["bnrepro.training.session"] >= {"bnrepro.training.loop", "bnrepro.data"}  # the walk sees imports
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            assert state.get(nxt) != "open", f"import cycle: {' -> '.join(path + [node, nxt])}"
            if nxt not in state:
                visit(nxt, path + [node])
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [])


def test_experiment_headers_are_short_and_their_history_exists():
    """An experiment's header keeps the command, the expected result, the runtime and one line per
    choice; what came before lives in the results/<sweep>/history.md it names."""
    import re

    for path in sorted((REPO / "configs" / "experiment").glob("*.yaml")):
        lines = path.read_text().splitlines()
        header = lines[:next(i for i, line in enumerate(lines) if not line.startswith("#"))]
        assert header[0] == "# @package _global_" and len(header) <= 32, (path.name, len(header))
        for pointer in re.findall(r"results/[\w.]+/history\.md", "\n".join(header)):
            assert (REPO / pointer).is_file(), (path.name, pointer)
