"""Issue 25: every mistake in an experiment is refused before training in one line (exit 2); a failing matrix
prints its distinct causes; `status` names unreadable phase weights; `collect` and `status` work on a read-only
store."""
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from lpft_bench.cli import main
from lpft_bench.datamodules.fakes import write_images

SMALL_NET = {"name": "timm:resnet10t", "random": True, "data_config": {"input_size": [3, 32, 32]}}


def folders(root: Path) -> dict:
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for label in ("cat", "dog"):
            write_images(root / "data" / split / label, 3, rng, ".png")
    return {"train": "data/train", "id_eval": "data/test"}


def config_file(path: Path, options: dict, common: dict | None = None, strategies: dict | None = None) -> Path:
    entry = {"benchmark": "folder", "options": options, "backbone": SMALL_NET, **({"common": common} if common else {})}
    path.write_text(yaml.safe_dump({"name": "pets", "seeds": [0], "benchmarks": {"pets": entry},
                                    "strategies": strategies or {"ft": {}}}))
    return path


def refused(capsys, *args: str) -> str:
    assert main(list(args)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("options, common, strategies, expected", [
    ({"id_eval": "data/test"}, None, None, "benchmarks.pets.options: benchmark 'folder' needs `train`"),
    ({"train": "data/train", "id_eval": "data/test", "subset": 0}, None, None, "subset=0, expected an integer >= 1"),
    ({"train": "data/train", "id_eval": "data/test", "shuffle": True}, None, None, "has no option 'shuffle'"),
    ({"train": "data/train", "id_eval": "data/test"}, {"batch_size": 0}, None,
     "benchmarks.pets.common: batch_size=0, expected an integer >= 1"),
    ({"train": "data/train", "id_eval": "data/test"}, {"epochs": 2.5}, None,
     "benchmarks.pets.common: epochs=2.5, expected an integer >= 1"),
    ({"train": "data/train", "id_eval": "data/test"}, None, {"ft": {"lr": [1e-3, -0.1]}},
     "strategies.ft: lr=-0.1, expected a finite number > 0"),
    ({"train": "data/train", "id_eval": "data/test"}, None, {"ft": {"lr": []}}, "strategies.ft: lr=[] sweeps no value"),
    ({"train": "data/train", "id_eval": "data/test"}, None, {"ft": {"head": "deep"}},
     "head='deep', expected one of linear, mlp"),
])
def test_an_experiment_value_out_of_its_schema_names_file_key_and_expected_value(tmp_path, capsys, options, common,
                                                                                  strategies, expected):
    folders(tmp_path)
    config = config_file(tmp_path / "c.yaml", options, common, strategies)
    err = refused(capsys, "run", "--config", str(config), "--out", str(tmp_path / "store"))
    assert str(config) in err and expected in err
    assert not (tmp_path / "store").exists()


def test_mutually_exclusive_suite_flags_are_refused(capsys):
    assert "--all runs every paper's suite and --suite quickstart one" in refused(capsys, "run", "--all", "--suite", "quickstart")


def test_an_empty_sweep_on_the_command_line_is_refused(tmp_path, capsys):
    err = refused(capsys, "run", "--set", "lr=[]", "--out", str(tmp_path / "store"))
    assert "--set: lr=[] sweeps no value" in err and not (tmp_path / "store").exists()


def test_a_duplicate_yaml_key_is_refused_with_both_lines(tmp_path, capsys):
    folders(tmp_path)
    text = config_file(tmp_path / "c.yaml", {"train": "data/train", "id_eval": "data/test"}).read_text()
    (tmp_path / "c.yaml").write_text(text + "seeds: [1]\n")  # `seeds` a second time, last
    first = next(i for i, line in enumerate(text.splitlines(), 1) if line.startswith("seeds:"))
    last = len(text.splitlines()) + 1
    err = refused(capsys, "run", "--config", str(tmp_path / "c.yaml"))
    assert f"line {last}, column 1: duplicate key 'seeds' (first given on line {first})" in err


def test_a_yaml_syntax_error_gives_line_and_column(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text("name: pets\nbenchmarks: {pets: {benchmark: folder}\nstrategies: {lp: {}}\n")
    err = refused(capsys, "run", "--config", str(tmp_path / "c.yaml"))
    assert "is not valid YAML: line 3, column 1: expected ',' or '}'" in err


def test_an_empty_class_folder_is_refused_before_any_job(tmp_path, capsys):
    options = folders(tmp_path)
    (tmp_path / "data" / "train" / "fox").mkdir()
    config = config_file(tmp_path / "c.yaml", options)
    err = refused(capsys, "run", "--config", str(config), "--out", str(tmp_path / "store"))
    assert "train class folder" in err and "fox holds no image" in err and not (tmp_path / "store").exists()


def test_a_failing_matrix_prints_each_distinct_cause_once_with_its_count(tmp_path, capsys, monkeypatch):
    import lpft_bench.runner as runner

    def fail(job, ctx):
        raise RuntimeError("the disk is full") if job.strategy == "lp" else ValueError(f"no GPU for {job.strategy}")

    monkeypatch.setattr(runner, "run_job", fail)
    assert main(["run", "--strategies", "lp", "ft", "--seeds", "0", "1", "--out", str(tmp_path / "store")]) == 1
    err = capsys.readouterr().err
    assert "10 job(s) failed" in err
    assert err.count("RuntimeError: the disk is full") == 1 and "  2 job(s): RuntimeError: the disk is full" in err
    assert err.count("ValueError: no GPU for ft") == 1 and "  8 job(s): ValueError: no GPU for ft" in err


@pytest.fixture(scope="module")
def lp_store(tmp_path_factory) -> Path:
    """A real store: one closed-form LP job on digits (its phase weights in phases/)."""
    out = tmp_path_factory.mktemp("lp") / "store"
    assert main(["run", "--strategies", "lp", "--seeds", "0", "--out", str(out), "--keep-weights", "all"]) == 0
    return out


def test_status_names_a_truncated_phase_weights_file(lp_store, tmp_path, capsys):
    store = shutil.copytree(lp_store, tmp_path / "store")
    assert main(["status", "--out", str(store)]) == 0
    assert "unreadable" not in capsys.readouterr().out
    weights = next(store.glob("phases/*/*.safetensors"))
    with open(weights, "r+b") as handle:
        handle.truncate(weights.stat().st_size // 2)
    assert main(["status", "--out", str(store)]) == 0
    out = capsys.readouterr().out
    assert f"unreadable phase weights: {weights}: truncated" in out


def _as_reader(command: list[str]) -> list[str]:
    """`command` run by a user who cannot write the store: as root, without the capabilities that ignore
    file permissions (util-linux setpriv)."""
    if os.geteuid() != 0:
        return command
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: cannot make a store read-only")
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-all", "--", *command]


def _read_only(root: Path) -> None:
    for path in [root, *root.rglob("*")]:
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def test_collect_and_status_work_on_a_read_only_store(lp_store, tmp_path):
    store = shutil.copytree(lp_store, tmp_path / "store")
    for table in ("runs.csv", "id.csv", "summary.md"):
        (store / table).unlink()
    _read_only(store)
    cli = [sys.executable, "-m", "lpft_bench.cli"]
    try:
        status = subprocess.run(_as_reader([*cli, "status", "--out", str(store)]), capture_output=True, text=True)
        assert status.returncode == 0 and "1 done" in status.stdout and "Traceback" not in status.stderr, status.stderr
        printed = subprocess.run(_as_reader([*cli, "collect", "--out", str(store)]), capture_output=True, text=True)
        assert printed.returncode == 0, printed.stderr
        assert "ID accuracy" in printed.stdout and "is read-only: tables printed, not written" in printed.stderr
        assert not (store / "runs.csv").exists()
        tables = tmp_path / "tables"
        written = subprocess.run(_as_reader([*cli, "collect", "--out", str(store), "--tables-out", str(tables),
                                             "--format", "md"]), capture_output=True, text=True)
        assert written.returncode == 0, written.stderr
        assert {"runs.csv", "id.csv", "ood.csv", "summary.md", "id.md"} <= {p.name for p in tables.iterdir()}
    finally:
        for path in [store, *store.rglob("*")]:
            path.chmod(path.stat().st_mode | stat.S_IWUSR)


def test_every_registered_option_has_a_schema_that_its_default_fits():
    from lpft_bench.checks import BACKBONE_FIELDS, BENCHMARK_FIELDS, DATA_CONFIG_FIELDS, HPARAM_FIELDS, benchmark_schema
    from lpft_bench.datamodules import BENCHMARKS
    from lpft_bench.models.backbones import BACKBONE_OPTIONS, DATA_CONFIG_KEYS
    from lpft_bench.strategies import STRATEGIES

    for strategy in STRATEGIES.values():
        for key, default in strategy.defaults.items():
            assert key in HPARAM_FIELDS, f"{strategy.name}: {key} has no schema"
            assert HPARAM_FIELDS[key].check(list(default) if isinstance(default, tuple) else default), (strategy.name, key)
    for name in BENCHMARKS:
        required, allowed = benchmark_schema(name)
        assert set(allowed) - {"mode"} <= set(BENCHMARK_FIELDS), name
    assert set(BACKBONE_OPTIONS) == set(BACKBONE_FIELDS) and set(DATA_CONFIG_KEYS) == set(DATA_CONFIG_FIELDS)


@pytest.mark.parametrize("option, expected", [("random=maybe", "random='maybe', expected true or false"),
                                              ("data_config={input_size: [3, 0, 32]}",
                                               "data_config.input_size=[3, 0, 32], expected [channels, height, width]")])
def test_a_backbone_option_out_of_its_schema_is_refused(capsys, option, expected):
    err = refused(capsys, "run", "--backbone", "timm:resnet10t", "--backbone-option", option, "--dry-run")
    assert expected in err


@pytest.mark.parametrize("flags, expected", [(["--wait"], "--wait applies to --launcher slurm only"),
                                             (["--slurm-option", "time=5"], "--slurm-option applies to --launcher slurm"),
                                             (["--slots", "2"], "--slots applies to --launcher pool only")])
def test_a_flag_of_another_launcher_is_refused(tmp_path, capsys, flags, expected):
    assert expected in refused(capsys, "run", *flags, "--out", str(tmp_path / "store"))
    assert not (tmp_path / "store").exists()
