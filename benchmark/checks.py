"""The checks before training: names that become paths, hyperparameters and benchmark options against one schema
per registered object. Every failure is a UsageError naming where the value came from, the key and what was
expected (the CLI prints it as one line, exit 2)."""
from __future__ import annotations

import inspect
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

from lpft_bench.errors import UsageError

# A name is a label, never a path: one segment of letters, digits, `.`, `_` and `-`, and not `.` or `..`.
NAME_PATTERN = re.compile(r"[A-Za-z0-9._-]+")
NAME_RULE = "letters, digits, '.', '_' and '-' only, not '.' or '..'"


def check_name(name, where: str) -> str:
    """`name` if it can be one path segment inside the store, else a UsageError saying the rule."""
    text = str(name)
    if not NAME_PATTERN.fullmatch(text) or text in (".", ".."):
        raise UsageError(f"{where}: {text!r} is not a name ({NAME_RULE}): a name is a label, never a path")
    return text


def inside(root: Path, path: Path) -> Path:
    """`path` if it stays inside `root` once both are resolved (links and `..` followed), else a UsageError."""
    resolved_root, resolved = Path(root).resolve(), Path(path).resolve()
    if resolved != resolved_root and resolved_root not in resolved.parents:
        raise UsageError(f"{path} leaves the results store {root}; names must be labels ({NAME_RULE})")
    return path


@dataclass(frozen=True)
class Field:
    """What one option or hyperparameter takes: `check(value)` is True when the value fits; `expected` says
    what fits, for the message."""

    check: Callable[[object], bool]
    expected: str


def _integer(low: int) -> Field:
    return Field(lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= low, f"an integer >= {low}")


def _number(low: float, high: float = math.inf, low_open: bool = False, high_open: bool = False) -> Field:
    def fits(v) -> bool:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            return False
        return (v > low if low_open else v >= low) and (v < high if high_open else v <= high)
    bounds = f"{'>' if low_open else '>='} {low:g}" + ("" if high == math.inf else f" and {'<' if high_open else '<='} {high:g}")
    return Field(fits, f"a finite number {bounds}")


def _one_of(*choices: str) -> Field:
    return Field(lambda v: v in choices, f"one of {', '.join(choices)}")


def _names() -> Field:
    return Field(lambda v: isinstance(v, (list, tuple)) and all(isinstance(x, str) and x for x in v),
                 "a list of module names")


BOOLEAN = Field(lambda v: isinstance(v, bool), "true or false")
TEXT = Field(lambda v: isinstance(v, str) and bool(v), "a non-empty string")
POSITIVE_RATE = _number(0, low_open=True)

# Every strategy hyperparameter, by name: the same field means the same thing in every strategy.
HPARAM_FIELDS: dict[str, Field] = {
    "epochs": _integer(1), "hp_epochs": _integer(0), "batch_size": _integer(1), "probe_size": _integer(1),
    "lr": POSITIVE_RATE, "hp_lr": POSITIVE_RATE, "lr_decay": _number(0, 1, low_open=True),
    "backbone_lr_ratio": _number(0), "l2sp_alpha": _number(0), "l2sp_beta": _number(0),
    "hp_smoothing": _number(0, 1, high_open=True), "ft_smoothing": _number(0, 1, high_open=True),
    "unfreeze_every": _integer(1), "head": _one_of("linear", "mlp"), "probe": _one_of("logistic", "sgd"),
    "batchnorm": _one_of("train", "eval"), "block": TEXT, "reinit_blocks": _names(), "ingredient": TEXT,
    "lrs": Field(lambda v: isinstance(v, (list, tuple)) and len(v) > 0 and all(POSITIVE_RATE.check(x) for x in v),
                 "a non-empty list of finite numbers > 0"),
    "reestimate_bn": BOOLEAN,
    "opposite_energy": BOOLEAN,
}


def check_hparam(key: str, value, where: str) -> None:
    field = HPARAM_FIELDS.get(key)
    if field is not None and not field.check(value):
        raise UsageError(f"{where}: {key}={value!r}, expected {field.expected}")


def check_grid(grid: dict, where: str, sweeps: bool = True) -> None:
    """Each value of a grid (a list sweeps, as suites.axis reads it: every element is checked, and an empty
    list sweeps nothing, which would leave the matrix empty)."""
    from lpft_bench.strategies import STRATEGIES
    from lpft_bench.suites import axis

    defaults = {k: v for strategy in STRATEGIES.values() for k, v in strategy.defaults.items()}
    for key, value in grid.items():
        if key == "strategy":
            continue
        if sweeps and isinstance(value, list) and not value:
            raise UsageError(f"{where}: {key}=[] sweeps no value, so the matrix would be empty; give at least one")
        for element in (axis(key, value, defaults) if sweeps else [value]):
            check_hparam(key, list(element) if isinstance(element, tuple) else element, where)


def _numbers(count: int | None = None, low: float = -math.inf) -> Field:
    def fits(v) -> bool:
        return (isinstance(v, (list, tuple)) and (count is None or len(v) == count) and len(v) > 0
                and all(_number(low).check(x) for x in v))
    return Field(fits, f"a list of {count or 'some'} finite numbers" + ("" if low == -math.inf else f" >= {low:g}"))


# A backbone's options (models.backbones.BACKBONE_OPTIONS) and the data_config keys timm reads.
BACKBONE_FIELDS: dict[str, Field] = {
    "pretrained": BOOLEAN, "random": BOOLEAN,
    "timm_kwargs": Field(lambda v: isinstance(v, dict), "a mapping of timm.create_model arguments"),
    "data_config": Field(lambda v: isinstance(v, dict), "a mapping of timm data config keys"),
}
DATA_CONFIG_FIELDS: dict[str, Field] = {
    "input_size": Field(lambda v: isinstance(v, (list, tuple)) and len(v) == 3 and all(_integer(1).check(x) for x in v),
                        "[channels, height, width], three integers >= 1"),
    "mean": _numbers(), "std": _numbers(low=0), "crop_pct": _number(0, 1, low_open=True), "interpolation": TEXT,
    "crop_mode": TEXT,
}


def check_backbone_options(options: dict, where: str) -> None:
    """Each backbone option, and each data_config entry, of the right type and in bounds (unknown keys are
    refused where the backbone is resolved, with the allowed ones)."""
    for key, value in options.items():
        field = BACKBONE_FIELDS.get(key)
        if field is not None and not field.check(value):
            raise UsageError(f"{where}: {key}={value!r}, expected {field.expected}")
    for key, value in (options.get("data_config") or {}).items():
        field = DATA_CONFIG_FIELDS.get(key)
        if field is not None and not field.check(value):
            raise UsageError(f"{where}: data_config.{key}={value!r}, expected {field.expected}")


# Options every benchmark shares, and the runner's own arguments (never the user's to give).
BENCHMARK_FIELDS: dict[str, Field] = {
    "subset": _integer(1), "cache_mb": _integer(0), "val_fraction": _number(0, 1, low_open=True, high_open=True),
    "root": TEXT, "train": TEXT, "id_eval": TEXT, "augment": BOOLEAN, "skip_unreadable": BOOLEAN,
    "ood": Field(lambda v: isinstance(v, dict) and all(isinstance(d, str) and d for d in v.values()),
                 "a mapping of OOD set names to folders"),
    "ood_sets": Field(lambda v: isinstance(v, (list, tuple)) and all(isinstance(x, str) for x in v),
                      "a list of OOD set names"),
    "cifar101_version": TEXT,
}
RUNNER_ARGUMENTS = ("self", "data_config", "data_root", "batch_size", "eval_batch_size", "num_workers", "seed")


@lru_cache(maxsize=None)
def benchmark_schema(name: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(required, allowed) options of a registered benchmark, read off its class's constructors."""
    from lpft_bench.datamodules import benchmark_class

    required, allowed = [], []
    for cls in benchmark_class(name).__mro__:
        if "__init__" not in vars(cls):
            continue
        for parameter in inspect.signature(vars(cls)["__init__"]).parameters.values():
            if parameter.kind in (parameter.VAR_KEYWORD, parameter.VAR_POSITIONAL) or parameter.name in RUNNER_ARGUMENTS:
                continue
            allowed.append(parameter.name)
            if parameter.default is parameter.empty:
                required.append(parameter.name)
    return tuple(dict.fromkeys(required)), tuple(dict.fromkeys(allowed))


def check_benchmark_options(name: str, options: dict, where: str) -> None:
    """Required options present, no unknown ones, each value of the right type and in bounds; OOD set names
    (they name feature caches) are names."""
    from lpft_bench.datamodules import benchmark_class

    required, allowed = benchmark_schema(name)
    if not isinstance(options, dict):
        raise UsageError(f"{where}: expected a mapping of options, got {options!r}")
    missing = [key for key in required if options.get(key) is None]
    if missing:
        raise UsageError(f"{where}: benchmark {name!r} needs `{missing[0]}` (required: {', '.join(required)})")
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise UsageError(f"{where}: benchmark {name!r} has no option {unknown[0]!r}; it takes {', '.join(allowed)}")
    for key, value in options.items():
        field = BENCHMARK_FIELDS.get(key)
        if value is not None and field is not None and not field.check(value):
            raise UsageError(f"{where}: {key}={value!r}, expected {field.expected}")
    modes = benchmark_class(name).modes
    if options.get("mode") is not None and options["mode"] not in modes:
        raise UsageError(f"{where}: mode={options['mode']!r}, expected one of {', '.join(modes)}")
    for set_name in options.get("ood") or {}:
        check_name(set_name, f"{where}: OOD set name")
    for set_name in options.get("ood_sets") or ():
        check_name(set_name, f"{where}: OOD set name")


def _images_per_class(directory: Path) -> dict[str, int]:
    """Images (torchvision's extensions) in each class folder of `directory`, from the run's one walk of it
    (`datamodules.walk`: links followed safely, hidden files not data)."""
    from torchvision.datasets.folder import IMG_EXTENSIONS

    from lpft_bench.datamodules.walk import walk_folder

    counts = {entry.name: 0 for entry in directory.iterdir() if entry.is_dir() and not entry.name.startswith(".")}
    for listed in walk_folder(directory):
        top, _, rest = listed.relative.partition("/")
        if rest and top in counts and listed.relative.lower().endswith(IMG_EXTENSIONS):
            counts[top] += 1
    return counts


def check_folder_classes(options: dict, where: str) -> None:
    """A folder benchmark's class folders each hold at least one file: an empty class cannot be learned, and
    torchvision would only refuse it once a job loads the data."""
    base = Path(options.get("root") or ".").expanduser()
    folders = {key: options[key] for key in ("train", "id_eval") if options.get(key)}
    folders.update({f"ood {n}": d for n, d in (options.get("ood") or {}).items()})
    for key, directory in folders.items():
        path = base / directory
        if not path.is_dir():
            continue  # the data check names a missing folder with how to obtain it
        for name, images in sorted(_images_per_class(path).items()):
            if images == 0:
                raise UsageError(f"{where}: {key} class folder {path / name} holds no image; put images in it or "
                                 "remove it")


def _folder_images(directory: str) -> int | None:
    return sum(_images_per_class(Path(directory)).values()) if Path(directory).is_dir() else None


@lru_cache(maxsize=8)
def _shipped_training_size(benchmark: str, mode: str | None, val_fraction: float | None) -> int:
    from lpft_bench.datamodules import build_datamodule

    options = {k: v for k, v in (("mode", mode), ("val_fraction", val_fraction)) if v is not None}
    return len(build_datamodule(benchmark, **options).splits.train)


def training_size(benchmark: str, options: dict) -> int | None:
    """How many training images a benchmark's data gives (before `subset`, a smoke-run knob that shrinks the
    set and so the last batch only); None when only reading the data would tell."""
    if benchmark == "folder":
        return _folder_images(str(Path(options.get("root") or ".").expanduser() / options["train"]))
    from lpft_bench.datamodules import benchmark_class

    if benchmark_class(benchmark).ships_data:  # in memory: split once per process, under a second
        return _shipped_training_size(benchmark, options.get("mode"), options.get("val_fraction"))
    return None


def check_batch_size(benchmark: str, options: dict, hparams: dict, where: str) -> None:
    """A batch size given (not a strategy's default) is at most the training set's size."""
    batch_size = hparams.get("batch_size")
    if batch_size is None:
        return
    size = training_size(benchmark, options)
    if size is not None and batch_size > size:
        raise UsageError(f"{where}: batch_size={batch_size}, expected at most the training set size {size}")
