"""One Registry type for every named concept, and what it buys: a benchmark registered with its fake is picked up
by every test that iterates the registry, and breaks none that does not concern it."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lpft_bench.errors import UsageError
from lpft_bench.registry import Registry

TESTS = Path(__file__).parent


class Entry:
    def __init__(self, name):
        self.name = name


def test_a_registry_refuses_a_name_twice_and_answers_an_unknown_one_with_the_known_ones():
    registry = Registry("widget", [Entry("a"), Entry("b")])
    assert registry.names() == ["a", "b"] and registry.get("a").name == "a" and "b" in registry
    with pytest.raises(ValueError, match="widget 'a' is registered twice"):
        registry.register(Entry("a"))
    with pytest.raises(UsageError, match="unknown widget 'c'; known: a, b"):
        registry.get("c")
    assert registry.get("c", None) is None  # a default, as a mapping's get: pytest's monkeypatch.setitem uses it
    assert Registry("widget", {"x": 1})["x"] == 1


# Registered before any test module imports the suites: the smoke suite and every registry-driven test see it.
# A hyphenated name, the case that once built a wrong LPFT_BENCH_DATA_<NAME> variable in the tests.
THROWAWAY_PLUGIN = textwrap.dedent('''
    from lpft_bench.datamodules import BENCHMARKS
    from lpft_bench.datamodules.cifar import Cifar10Shift


    class Throwaway(Cifar10Shift):
        name = "cifar10-throwaway"


    BENCHMARKS.register(Throwaway)
''')


@pytest.mark.slow  # a pytest run of the registry-driven datamodule and suite tests in a subprocess
def test_a_throwaway_benchmark_breaks_no_test_that_does_not_concern_it(tmp_path):
    (tmp_path / "throwaway_benchmark.py").write_text(THROWAWAY_PLUGIN)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "throwaway_benchmark", "-m", "not slow",
         "-p", "no:cacheprovider", str(TESTS / "test_datamodules.py"),
         f"{TESTS / 'test_runner.py'}::test_suite_expansion_counts_and_filters"],
        env=env, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    # It did run over the throwaway benchmark: its fake loaded and its sets were checked.
    collected = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "--collect-only", "-p", "throwaway_benchmark", "-p", "no:cacheprovider",
         str(TESTS / "test_datamodules.py")], env=env, capture_output=True, text=True, cwd=tmp_path).stdout
    assert "cifar10-throwaway" in collected
