"""The ren2023 suite: Ren et al.'s Tables 1-3 as plans, the paper alias, `--all` over both papers, and `collect`
writing a vs_paper row for every cell of Tables 1 and 3 from a smoke-sized store of the suite."""
from __future__ import annotations

from dataclasses import replace

import pandas as pd
import pytest

from lpft_bench.analysis.vs_ren2023 import CAVEAT, paper_values
from lpft_bench.cli import main
from lpft_bench.ren2023 import REN2023, TABLE3_VARIANTS
from lpft_bench.suites import SUITES, get_suite

TABLE1_CELLS = {(row, column) for table, row, column in paper_values() if table == "Table 1"
                and not column.startswith("tox21")}
TABLE3_CELLS = {(row, column) for table, row, column in paper_values() if table == "Table 3"}


def test_kumar2022_is_the_paper_suite_under_another_name():
    assert get_suite("kumar2022") is get_suite("paper") is SUITES["paper"]
    assert "kumar2022" not in SUITES  # one entry: iterating the suites never meets Kumar et al.'s jobs twice


def test_every_table_1_and_3_cell_has_its_plan():
    assert len(TABLE1_CELLS) == 9 * 5 and len(TABLE3_CELLS) == 3 * 4 * 2
    for row, column in TABLE1_CELLS:
        task, pretraining = column.split("@")
        plan = REN2023.benchmarks[f"{task}-{pretraining}"]
        assert plan.benchmark == task and {"hp-ft", "lshp-ft"} <= set(plan.strategies)
    for domain in ("real", "sketch", "quickdraw"):
        plan = REN2023.benchmarks[f"domainnet-{domain}-200-sup-in"]
        assert plan.backbone == "sup-in-resnet50" and {"hp-ft", "reinit-ft"} <= set(plan.strategies)
    configs = {tuple(job.hparams["reinit_blocks"]) for job in REN2023.expand(strategies=["reinit-ft"])}
    assert configs == {blocks for blocks in TABLE3_VARIANTS.values() if blocks}


def test_all_dry_run_counts_jobs_per_paper_and_table(capsys, tmp_path, monkeypatch):
    for arch in ("resnet18", "resnet50"):  # Sup-C10's id is its file's digest: a stand-in file serves the dry run
        (tmp_path / f"sup-c10-{arch}.safetensors").write_bytes(b"stand-in")
    monkeypatch.setenv("LPFT_BENCH_CHECKPOINTS", str(tmp_path))
    assert main(["run", "--all", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "576 jobs in suite papers" in out
    assert "kumar2022: 222 jobs; Tables 1-2 (ID, OOD): 222" in out
    assert "ren2023: 354 jobs; Figures 3-4: 270; Table 1: 297; Table 2: 33; Table 3: 36" in out


def test_before_sup_c10_is_pretrained_a_dry_run_counts_its_jobs_and_a_run_says_how_to_make_it(
        capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("LPFT_BENCH_CHECKPOINTS", str(tmp_path))  # empty: nothing pretrained here yet
    sup_c10 = [label for label, plan in REN2023.benchmarks.items() if plan.backbone == "sup-c10-resnet50"]
    waiting = len(REN2023.expand(benchmarks=sup_c10))
    assert main(["run", "--all", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "576 jobs in suite papers" in out and out.count("(not pretrained)") == waiting > 0
    assert f"{waiting} jobs start from a backbone not pretrained on this machine yet (sup-c10-resnet50)" in out
    assert main(["run", "--suite", "ren2023", "--benchmarks", sup_c10[0], "--out", str(tmp_path / "store")]) == 2
    assert "make it with `lpft-bench pretrain cifar10 --arch resnet50`" in capsys.readouterr().err


def _smoke_suite():
    """ren2023 with every plan untrained at 32-44 px on 20 fake images, one seed, one epoch, τ ∈ {0, 1}. Untrained,
    the four pretrainings would be one network: each keeps its own input size, so they remain four settings."""
    sizes = {"moco-in": 32, "sup-in": 36, "sup-c10": 40, "simclr": 44}

    def untrained(pretraining: str) -> dict:
        return {"random": True, "data_config": {"input_size": (3, sizes[pretraining], sizes[pretraining])}}
    plans = {label: replace(plan, options={"subset": 20}, backbone_options=untrained(plan.backbone_label),
                            common={**plan.common, "epochs": 1, "batch_size": 8, "hp_epochs": 1},
                            grids={"hp-ft": {"hp_epochs": [1]}} if plan.grids else {})
             for label, plan in REN2023.benchmarks.items()}
    strategies = {label: {**grid, "hp_epochs": [0, 1] if label == "hp-ft" else 1}
                  for label, grid in REN2023.strategies.items()}
    return replace(REN2023, name="ren2023-smoke", benchmarks=plans, strategies=strategies, seeds=(0,), fake_data=True)


@pytest.mark.slow  # 46 jobs of an untrained ResNet-50 at 32-44 px
def test_collect_on_a_smoke_store_writes_every_table_1_and_3_cell(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(SUITES, "ren2023-smoke", _smoke_suite())
    store = tmp_path / "store"
    assert main(["run", "--suite", "ren2023-smoke", "--out", str(store), "--no-preflight"]) == 0
    assert "Ren et al. 2023: cells can match the paper's trends and rough levels" in capsys.readouterr().out
    table = pd.read_csv(store / "vs_paper.csv")
    ren = table[table["paper_source"] == "Ren et al. 2023"]
    assert {(r, c) for r, c, t in zip(ren["strategy"], ren["column"], ren["table"]) if t == "Table 1"} == TABLE1_CELLS
    assert {(r, c) for r, c, t in zip(ren["strategy"], ren["column"], ren["table"]) if t == "Table 3"} == TABLE3_CELLS
    assert ren["paper"].notna().all() and ren["mean"].between(0, 100).all() and (ren["jobs"].str.len() > 0).all()
    # HP0 is τ = 0, HP200 the longest τ of the (smoke) sweep, HP* whichever τ validated best.
    settings = ren.set_index(["strategy", "column"])["setting"]
    assert '"hp_epochs": 0' in settings["HP0-FT", "cifar100@sup-in"]
    assert '"hp_epochs": 1' in settings["HP200-FT", "cifar100@sup-in"]
    assert CAVEAT in (store / "summary.md").read_text()


def _record(job_id: str, label: str, strategy: str, hparams: dict, seed: int, val: float, test: float,
            head_acc: float) -> dict:
    return {"job_id": job_id, "status": "done", "selection": {"set": "id_val", "epoch": 0},
            "job": {"benchmark": label.split("-")[0], "strategy": strategy, "seed": seed, "hparams": hparams,
                    "labels": {"benchmark": label}},
            "final": {"id_val": val, "id_test": test},
            "phases": [{"name": "ft", "start": {"train_acc": head_acc}, "feature_change": {}}]}


def test_table_1_rules_hp0_longest_tau_best_validated_tau_and_hp_train_acc():
    from lpft_bench.analysis.vs_ren2023 import ren_comparison

    records = [_record(f"t{tau}s{seed}", "stl10-sup-in", "hp-ft", {"hp_epochs": tau}, seed, val, test, head)
               for tau, val, test, head in ((0, 0.5, 0.50, 0.1), (8, 0.9, 0.80, 0.6), (200, 0.7, 0.70, 0.95))
               for seed in (0, 1)]
    cells = ren_comparison(records).set_index("strategy")
    assert cells.loc["HP0-FT", "mean"] == 50.0 and cells.loc["HP200-FT", "mean"] == 70.0
    assert cells.loc["HP*-FT", "mean"] == 80.0 and '"hp_epochs": 8' in cells.loc["HP*-FT", "setting"]
    assert cells.loc["HP-train-acc", "mean"] == 95.0 and cells.loc["HP-train-acc", "paper"] == 96.291
    assert cells.loc["HP*-FT", "jobs"] == "t8s0 t8s1" and cells.loc["HP*-FT", "seeds"] == 2
    from lpft_bench.analysis.vs_ren2023 import table2_cells

    table2 = table2_cells(records)  # Table 2's small energy on STL-10 from Sup-IN: the longest unsmoothed HP
    assert table2[["row", "column", "acc", "jobs"]].values.tolist() == [["small energy", "stl10@sup-in", 70.0, "t200s0 t200s1"]]


def test_opposite_energy_is_run_only_when_asked_for_by_name():
    from lpft_bench.strategies import get_strategy

    lshp = get_strategy("lshp-ft")
    reversed_smoothing = {"hp_smoothing": 0.0, "ft_smoothing": 0.1}
    with pytest.raises(ValueError, match="opposite_energy=true runs that case deliberately"):
        lshp.phases(reversed_smoothing)
    hp, ft = lshp.phases({**reversed_smoothing, "opposite_energy": True})
    assert (hp.label_smoothing, ft.label_smoothing) == (0.0, 0.1)
    with pytest.raises(ValueError, match="needs ft_smoothing > hp_smoothing"):
        lshp.phases({"hp_smoothing": 0.3, "ft_smoothing": 0.0, "opposite_energy": True})


def test_dry_run_prints_domainnet_200s_official_lists_and_kwcocos_sha512_prefixes(capsys):
    assert main(["data", "download", "--dry-run", "domainnet-quickdraw-200"]) == 0
    out = capsys.readouterr().out
    for name, prefix in (("quickdraw_train.txt", "7410e8a1debd769e"), ("quickdraw_test.txt", "07a97e84d723f58d"),
                         ("quickdraw.zip", "127cce1dd57fc999")):
        address = ("http://csr.bu.edu/ftp/visda/2019/multi-source/" + ("domainnet/txt/" if name.endswith(".txt") else "")
                   + name)
        assert f"{address}\n      sha512 {prefix}" in out
