"""Import hygiene: no cycle among the package's modules, no import-time side effects, and a command line whose
--help loads neither torch nor Lightning."""
import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROOTS = {"lpft_bench": REPO / "benchmark", "lpft_bench.datamodules": REPO / "datamodules",
         "lpft_bench.strategies": REPO / "strategies"}


def _modules() -> dict[str, tuple[Path, bool]]:
    modules = {}
    for prefix, root in ROOTS.items():
        for path in root.rglob("*.py"):
            parts = [p for p in path.relative_to(root).with_suffix("").parts if p != "__init__"]
            modules[".".join([prefix, *parts])] = (path, path.name == "__init__.py")
    return modules


def _imported_at_load(path: Path, name: str, is_package: bool, known: dict) -> set[str]:
    """The package's modules `path` imports when it is loaded (not under TYPE_CHECKING, not inside functions)."""
    package = name if is_package else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for statement in ast.walk(node) if isinstance(node, (ast.If, ast.Try)) else [node]:
            if isinstance(statement, ast.Import):
                found.update(alias.name for alias in statement.names)
            elif isinstance(statement, ast.ImportFrom):
                base = statement.module or ""
                if statement.level:
                    parent = package.split(".")[: len(package.split(".")) - statement.level + 1]
                    base = ".".join(parent + ([base] if base else []))
                found.add(base)
                found.update(f"{base}.{alias.name}" for alias in statement.names)
    return {module for module in found if module in known and module != name}


def test_no_module_of_the_package_imports_one_that_imports_it_back():
    modules = _modules()
    graph = {name: _imported_at_load(path, name, is_package, modules) for name, (path, is_package) in modules.items()}
    cycles = []

    def visit(name: str, trail: list[str]) -> None:
        for imported in sorted(graph[name]):
            if imported in trail:
                cycles.append(trail[trail.index(imported):] + [imported])
            elif imported not in done:
                visit(imported, trail + [imported])
        done.add(name)

    done: set[str] = set()
    for name in sorted(graph):
        if name not in done:
            visit(name, [name])
    assert not cycles, f"import cycles: {cycles[:3]}"
    assert len(graph) > 50  # the walk found the package


def test_importing_every_module_changes_no_global_state_and_help_loads_no_torch():
    script = """
import importlib, os, sys
os.umask(0o027)
real_umask = os.umask
def refuse(mask):
    raise AssertionError("an import touched the umask (a process-wide setting other threads read)")
os.umask = refuse
from lpft_bench.cli import main
assert main(["--help"]) == 0
assert not {"torch", "lightning"} & set(sys.modules), sorted({"torch", "lightning"} & set(sys.modules))
for name in sys.argv[1:]:
    importlib.import_module(name)
import timm
assert real_umask(0o027) == 0o027, "an import changed the umask"
assert "digits_mlp" not in timm.list_models("digits_mlp"), "an import registered a model with timm"
"""
    names = sorted(_modules())
    done = subprocess.run([sys.executable, "-c", script, *names], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
