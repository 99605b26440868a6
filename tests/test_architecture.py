"""The architecture is part of the lesson: these tests keep the library readable as a book.

- no import cycle among tinyllm's modules (a file imports only from the floors below it);
- nothing in the library imports the benchmarks, except the `tinyllm bench` command itself;
- the engine stays short enough to read in one sitting, and no library file grows past ~350 lines;
- library, test and benchmark lines stay within 100 characters (the ruff setting in
  pyproject.toml);
- each upper-case constant is defined in one file only.
"""

import ast
from pathlib import Path

import pytest

LIBRARY = Path(__file__).resolve().parent.parent / "tinyllm"
ENGINE = ("backend.py", "autograd.py", "tensor.py", "ops.py", "shape_ops.py")
ENGINE_MAX_LINES = 850
FILE_MAX_LINES = 350
LINE_MAX_CHARS = 100


def module_name(path: Path) -> str:
    """tinyllm/nn/layers.py -> tinyllm.nn.layers; tinyllm/nn/__init__.py -> tinyllm.nn"""
    parts = list(path.relative_to(LIBRARY.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(LIBRARY.rglob("*.py"))}
PACKAGES = {name for name, path in MODULES.items() if path.name == "__init__.py"}


def imported_modules(name: str) -> set[str]:
    """The tinyllm modules that module ``name`` imports, anywhere in its body (lazy imports count
    too).

    ``from tinyllm.nn import layers`` names the module tinyllm.nn.layers; ``from tinyllm.nn import
    Linear`` names the package tinyllm.nn, a node whose edges are what its ``__init__`` imports.
    """
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import: climb level - 1 packages from this one
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for (
                alias
            ) in node.names:  # a submodule if there is one of that name, else the package's name
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
    # every module's enclosing packages are imported before it anyway: they are no dependency
    return {t for t in found if t in MODULES and t != name and not name.startswith(t + ".")}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (the first repeated at the end), or None. Iterative
    DFS."""
    state = dict.fromkeys(graph, "new")  # new -> open (on the current path) -> done
    for start in graph:
        if state[start] != "new":
            continue
        path, stack = [], [(start, iter(sorted(graph[start])))]
        state[start] = "open"
        path.append(start)
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                path.pop()
                state[node] = "done"
            elif state[child] == "open":
                return path[path.index(child) :] + [child]
            elif state[child] == "new":
                state[child] = "open"
                path.append(child)
                stack.append((child, iter(sorted(graph[child]))))
    return None


def test_the_cycle_finder_finds_a_cycle_and_accepts_a_tree():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle_among_library_modules():
    graph = {name: imported_modules(name) for name in MODULES}
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_library_never_imports_the_benchmarks():
    benchmark = {
        name for name in MODULES if name == "tinyllm.bench" or name.startswith("tinyllm.bench.")
    }
    for name in MODULES:
        if name in benchmark or name == "tinyllm.cli":
            continue
        assert not imported_modules(name) & benchmark, f"{name} imports the benchmark code"
        assert "tinyllm.bench" not in MODULES[name].read_text(), f"{name} names tinyllm.bench"


def line_count(path: Path) -> int:
    return len(path.read_text().splitlines())


def test_the_engine_reads_in_one_sitting():
    total = sum(line_count(LIBRARY / name) for name in ENGINE if (LIBRARY / name).exists())
    assert total <= ENGINE_MAX_LINES, f"the engine ({', '.join(ENGINE)}) has {total} lines"


@pytest.mark.parametrize("name", sorted(n for n in MODULES))
def test_library_files_are_short_and_lines_narrow(name):
    path = MODULES[name]
    assert line_count(path) <= FILE_MAX_LINES, (
        f"{path.name} has {line_count(path)} lines: split it by concept"
    )
    long = [
        i for i, line in enumerate(path.read_text().splitlines(), 1) if len(line) > LINE_MAX_CHARS
    ]
    assert not long, f"{path.name}: lines {long} are longer than {LINE_MAX_CHARS} characters"


@pytest.mark.parametrize("folder", ["tests", "benchmarks"])
def test_test_and_benchmark_lines_are_narrow(folder):
    long = [
        f"{path.name}:{i}"
        for path in sorted((LIBRARY.parent / folder).glob("*.py"))
        for i, line in enumerate(path.read_text().splitlines(), 1)
        if len(line) > LINE_MAX_CHARS
    ]
    assert not long, f"lines longer than {LINE_MAX_CHARS} characters: {', '.join(long)}"


def test_each_constant_is_defined_in_one_file():
    where: dict[str, list[str]] = {}
    for name, path in MODULES.items():
        for node in ast.parse(path.read_text()).body:
            targets = (
                node.targets
                if isinstance(node, ast.Assign)
                else ([node.target] if isinstance(node, ast.AnnAssign) else [])
            )
            for target in targets:
                if isinstance(target, ast.Name) and target.id.isupper() and len(target.id) > 1:
                    where.setdefault(target.id, []).append(name)
    twice = {constant: modules for constant, modules in where.items() if len(modules) > 1}
    assert not twice, f"constants defined in more than one module: {twice}"
