"""Experiment files: a suite written as YAML (or TOML), paths relative to the file, validated before anything runs.

    name: my-shift
    seeds: [0, 1, 2]
    benchmarks:
      my-cifar:                        # a label: the same benchmark may appear under several
        benchmark: folder              # default: the label
        options: {train: data/train, id_eval: data/test, ood: {blur: data/blur}}
        backbone: efficientnet-lite0   # or {name: timm:resnet50, weights: FILE | pretrained: true | random: true,
                                       #     data_config: {input_size: [3, 96, 96]}, label: r50-96}
        common: {epochs: 3, batch_size: 64}
        grids: {ft: {lr: [1.0e-3]}}     # per-strategy overrides for this benchmark
    strategies:
      lp: {}
      ft: {lr: [1.0e-3, 1.0e-2]}       # a list sweeps (see suites.axis)
      lp-ft-bn-train: {strategy: lp-ft, batchnorm: train}   # a labelled variant
"""
from __future__ import annotations

import re
from pathlib import Path

import yaml

from lpft_bench.checks import check_backbone_options, check_benchmark_options, check_grid, check_name
from lpft_bench.datamodules import benchmark_class
from lpft_bench.errors import UsageError
from lpft_bench.suites import Plan, Suite


class _Loader(yaml.SafeLoader):
    """YAML as people write it: 1e-3 is a number (YAML 1.1 alone reads it as the string "1e-3"), and a key
    given twice in one mapping is an error (PyYAML would keep the last silently)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                except TypeError:  # an unhashable key: the base constructor says so
                    continue
                if duplicate:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping", node.start_mark,
                        f"duplicate key {key!r} (first given on line {seen[key]}); keep one of them", key_node.start_mark)
                seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*\.[0-9_]*|\.[0-9_]+|[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)?$|^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$"),
    list("-+0123456789."))


def read_yaml(text: str):
    return yaml.load(text, Loader=_Loader)


def yaml_problem(error: yaml.YAMLError) -> str:
    """A YAML error as `line L, column C: problem` (1-based, as editors count)."""
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark is not None else problem


SUITE_KEYS = ("name", "description", "seeds", "benchmarks", "strategies")
PLAN_KEYS = ("benchmark", "options", "backbone", "common", "grids")
BACKBONE_KEYS = ("name", "weights", "pretrained", "random", "data_config", "timm_kwargs", "label")


def _mapping(value, where: str, allowed: tuple[str, ...] | None = None) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UsageError(f"{where}: expected a mapping, got {type(value).__name__} {value!r}")
    unknown = sorted(set(value) - set(allowed)) if allowed is not None else []
    if unknown:
        raise UsageError(f"{where}: unknown key(s) {unknown}; allowed: {', '.join(allowed)}")
    return value


def _relative_to(base: Path, path: str) -> str:
    return str(path) if Path(path).expanduser().is_absolute() else str(base / path)


def _resolve_paths(benchmark: str, options: dict, base: Path) -> dict:
    """The benchmark's path options (folder: train, id_eval, each OOD set; any: root) relative to the file."""
    resolved = dict(options)
    for key in benchmark_class(benchmark).path_options:
        value = resolved.get(key)
        if isinstance(value, dict):
            resolved[key] = {name: _relative_to(base, directory) for name, directory in value.items()}
        elif value is not None:
            resolved[key] = _relative_to(base, value)
    return resolved


def _plan(label: str, entry, base: Path, path: Path) -> Plan:
    where = f"{path}: benchmarks.{label}"
    entry = _mapping(entry, where, PLAN_KEYS)
    benchmark = entry.get("benchmark", label)
    benchmark_class(benchmark)  # an unknown benchmark is named here, with the known ones
    backbone = entry.get("backbone", "digits-resnet")
    if isinstance(backbone, str):
        backbone = {"name": backbone}
    backbone = _mapping(backbone, f"{where}.backbone", BACKBONE_KEYS)
    if "name" not in backbone:
        raise UsageError(f"{where}.backbone: needs a name (a registered backbone or timm:<model>)")
    weights = backbone.get("weights")
    options = {k: backbone[k] for k in ("pretrained", "random", "data_config", "timm_kwargs") if k in backbone}
    check_backbone_options(options, f"{where}.backbone")
    benchmark_options = _mapping(entry.get("options"), f"{where}.options")
    check_benchmark_options(benchmark, benchmark_options, f"{where}.options")
    common = _mapping(entry.get("common"), f"{where}.common")
    check_grid(common, f"{where}.common", sweeps=False)
    grids = {k: _mapping(v, f"{where}.grids.{k}") for k, v in _mapping(entry.get("grids"), f"{where}.grids").items()}
    for strategy_label, grid in grids.items():
        check_grid(grid, f"{where}.grids.{strategy_label}")
    return Plan(backbone=backbone["name"], options=_resolve_paths(benchmark, benchmark_options, base),
                common=common, grids=grids,
                benchmark=benchmark if benchmark != label else None,
                checkpoint=_relative_to(base, weights) if weights else None, backbone_options=options,
                backbone_label=backbone.get("label"))


def _parse(path: Path):
    if path.suffix == ".toml":
        import tomllib  # Python >= 3.11

        return tomllib.loads(path.read_text())
    return read_yaml(path.read_text())


def load_experiment(path: str | Path) -> Suite:
    """The suite an experiment file describes (`.yaml`/`.yml` or `.toml`)."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"experiment file {path} does not exist")
    try:
        data = _parse(path)
    except yaml.YAMLError as error:
        raise UsageError(f"experiment file {path} is not valid YAML: {yaml_problem(error)}") from error
    except ValueError as error:  # tomllib's TOMLDecodeError (its message gives line and column)
        raise UsageError(f"experiment file {path} is not valid TOML: {str(error).splitlines()[0]}") from error
    data = _mapping(data, str(path), SUITE_KEYS)
    for key in ("benchmarks", "strategies"):
        if not data.get(key):
            raise UsageError(f"{path}: needs `{key}`, a mapping of labels to entries")
    seeds = data.get("seeds", [0, 1, 2])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and s >= 0 for s in seeds):
        raise UsageError(f"{path}: seeds must be a non-empty list of non-negative integers, got {seeds!r}")
    base = path.resolve().parent
    name = check_name(data.get("name", path.stem), f"{path}: name")
    benchmarks = {check_name(label, f"{path}: benchmarks"): _plan(str(label), entry, base, path)
                  for label, entry in _mapping(data["benchmarks"], "benchmarks").items()}
    strategies = {}
    for label, grid in _mapping(data["strategies"], "strategies").items():
        strategies[check_name(label, f"{path}: strategies")] = _mapping(grid, f"strategies.{label}")
        check_grid(strategies[str(label)], f"{path}: strategies.{label}")
    return Suite(name, str(data.get("description", f"experiment file {path.name}")),
                 benchmarks=benchmarks, strategies=strategies, seeds=tuple(seeds))
