"""The wheel holds every subpackage: the three source folders map to one import package (`package-dir` in
pyproject.toml), and the package list there must name each folder that has an __init__.py, and nothing else."""
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_wheels_package_list_is_exactly_the_folders_that_are_packages():
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    on_disk = set()
    for package, folder in setuptools["package-dir"].items():
        for init in (REPO / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(REPO / folder).parts
            name = ".".join([package, *relative])
            # A folder mapped to a package of its own is that package, not a subpackage of its parent's root.
            if not any(other != package and name.startswith(other + ".") and len(other) > len(package)
                       for other in setuptools["package-dir"]):
                on_disk.add(name)
    assert set(setuptools["packages"]) == on_disk, "pyproject.toml's packages differ from the folders with __init__.py"
    for package, patterns in setuptools["package-data"].items():
        folder = REPO / setuptools["package-dir"].get(package, setuptools["package-dir"]["lpft_bench"] + "/" +
                                                        "/".join(package.split(".")[1:]))
        assert all(list(folder.glob(pattern)) for pattern in patterns), (package, patterns)
