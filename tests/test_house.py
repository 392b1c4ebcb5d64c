"""The shape of the house: no import circle (module or package level), no source file over
400 lines, no block of six or more identical lines repeated (pylint's similarity checker).

These guard the layout the README's table describes; a failure names the offending files.
"""
import ast
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("platform", "trainers", "search_spaces", "reports")
MAX_LINES = 400
MIN_DUPLICATE_LINES = 6
# package-level direction of the layout: an import against it is a layering error
FORBIDDEN = {"trainers": ("platform", "reports", "search_spaces"), "search_spaces": ("platform", "reports"),
             "reports": ("platform",)}


def source_files(roots=PACKAGES + ("tests",)) -> list[str]:
    out = []
    for root in roots:
        for dirpath, dirnames, files in os.walk(os.path.join(ROOT, root)):
            dirnames[:] = [d for d in dirnames if d != "__pycache__"]
            out += [os.path.join(dirpath, f) for f in files if f.endswith(".py")]
    return sorted(out)


def module_name(path: str) -> str:
    rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
    return rel[: -len(".__init__")] if rel.endswith(".__init__") else rel


def import_graph() -> dict[str, set[str]]:
    """Project module -> project modules it imports (anywhere in the file, lazy imports included)."""
    files = {module_name(p): p for p in source_files(PACKAGES)}
    graph = {}
    for mod, path in files.items():
        is_pkg = path.endswith("__init__.py")
        deps = set()
        for node in ast.walk(ast.parse(open(path).read(), path)):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the module's package, up level - 1 times
                    package = mod if is_pkg else mod.rpartition(".")[0]
                    for _ in range(node.level - 1):
                        package = package.rpartition(".")[0]
                    base = ".".join(p for p in (package, base) if p)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            for target in targets:
                while target and target not in files:
                    target = target.rpartition(".")[0]
                if target and target != mod:
                    deps.add(target)
        graph[mod] = deps
    return graph


def unit_of(module: str) -> str:
    """Package-level unit: trainers' subpackages and top-level modules one each; the other
    top-level packages as a whole."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "trainers" and len(parts) > 1 else parts[0]


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state, stack = {}, []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def collapse(graph: dict[str, set[str]], unit) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for mod, deps in graph.items():
        out.setdefault(unit(mod), set()).update(unit(d) for d in deps if unit(d) != unit(mod))
    return out


def test_no_import_circle_between_modules():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_no_import_circle_between_packages():
    graph = import_graph()
    for name, unit in (("trainers subpackage", unit_of), ("top-level package", lambda m: m.split(".")[0])):
        cycle = find_cycle(collapse(graph, unit))
        assert cycle is None, f"{name} circle: " + " -> ".join(cycle)


def test_layers_point_one_way():
    wrong = sorted(f"{mod} imports {dep}" for mod, deps in import_graph().items() for dep in deps
                   if dep.split(".")[0] in FORBIDDEN.get(mod.split(".")[0], ()))
    assert not wrong, "\n".join(wrong)


def test_the_checks_catch_a_circle():
    """The cycle finder itself: a planted circle is found at both levels."""
    graph = {"trainers.a.x": {"trainers.b.y"}, "trainers.b.y": {"trainers.a.z"}, "trainers.a.z": set()}
    assert find_cycle(graph) is None
    assert find_cycle(collapse(graph, unit_of)) == ["trainers.a", "trainers.b", "trainers.a"]


def test_no_source_file_over_the_limit():
    long = {os.path.relpath(p, ROOT): n for p in source_files() if (n := sum(1 for _ in open(p))) > MAX_LINES}
    assert not long, f"files over {MAX_LINES} lines: {long}"


def test_no_repeated_block_of_identical_lines():
    files = source_files(PACKAGES)
    proc = subprocess.run([sys.executable, "-m", "pylint.checkers.symilar", "-d", str(MIN_DUPLICATE_LINES), "-i",
                           "--ignore-docstrings", "--ignore-imports", "--ignore-signatures", *files],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr
    assert "duplicates=0 " in summary, proc.stdout[-6000:]


def test_every_package_is_installed():
    """pyproject lists packages explicitly (a flat layout with several top-level packages): a new
    subpackage missing there would be absent from a non-editable install."""
    import tomllib
    listed = set(tomllib.load(open(os.path.join(ROOT, "pyproject.toml"), "rb"))["tool"]["setuptools"]["packages"])
    found = {module_name(p) for p in source_files(PACKAGES) if p.endswith("__init__.py")}
    assert found == listed, f"missing from pyproject: {sorted(found - listed)}; stale: {sorted(listed - found)}"
