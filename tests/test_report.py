"""The report from synthetic stores: hand-written job records, so every expected number is known."""
import argparse
import math

import pandas as pd
import pytest

from lpft_bench.analysis.report import add_report_arguments, main_report, write_report
from lpft_bench.engine.identity import meaning_hash
from lpft_bench.storage import write_json

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DIGITS_SETS = {"id_val": "id", "id_test": "id", "rotated-mild": "ood", "rotated-strong": "ood"}
LIVING17_SETS = {"id_test": "id", "living17-target": "ood"}
OOD_DROP = {"id_val": 0.0, "id_test": 0.01, "rotated-mild": 0.2, "rotated-strong": 0.4, "living17-target": 0.2}


def write_record(store, strategy, seed, hparams, accuracy, *, energy=0.5, distance=1.0, sets=None,
                 benchmark="digits", probe_only=False, backbone="digits-resnet", hp_train_acc=0.1):
    """A finished job whose numbers all derive from `accuracy`, `energy`, `distance` and `hp_train_acc`."""
    sets = sets or DIGITS_SETS
    job = {"benchmark": benchmark, "strategy": strategy, "seed": seed, "backbone": backbone,
           "hparams": hparams, "benchmark_options": {}, "checkpoint": None}
    job_id = meaning_hash(job)
    selection_set = "id_val" if "id_val" in sets else "id_test"
    final = {name: accuracy - OOD_DROP[name] for name in sets}
    epochs = [{"epoch": 0, **{f"acc/{name}": value for name, value in final.items()}, "train/acc": 0.9, "train/loss": 0.3}]
    if probe_only:
        phases = [{"name": "lp", "phase": {}, "epochs": epochs, "end": {"head_sha256": "0", "head_norm": 1.0}}]
    else:
        change = {name: {"distance": distance * (1.0 if split == "id" else 0.5), "dot": 10 * distance,
                         "cosine": 1 - distance / 10, "norm": 3 * distance, "norm_before": 2.0}
                  for name, split in sets.items()}
        phases = [{"name": "ft", "phase": {}, "epochs": epochs,
                   "start": {"head_sha256": "0", "head_norm": 1.0, "train_acc": hp_train_acc, "train_loss": 2.3,
                             "average_initial_energy": energy},
                   "feature_change": change, "id_over_ood_feature_change": {}, "backbone_distance_from_pretrained": 1.0,
                   "end": {"head_sha256": "1", "head_norm": 2.0}}]
    record = {"schema": "lpft-bench/record/v1", "job_id": job_id, "job": job, "status": "done",
              "eval_sets": {name: {"split": split, "size": 100} for name, split in sets.items()},
              "selection": {"set": selection_set, "phase": phases[-1]["name"], "epoch": 0},
              "final": final, "phases": phases, "environment": {}, "seconds": 1.0}
    write_json(store / "jobs" / job_id / "record.json", record)
    return record


def write_failed(store):
    job = {"benchmark": "digits", "strategy": "ft", "seed": 9, "backbone": "digits-resnet", "hparams": {},
           "benchmark_options": {}, "checkpoint": None}
    job_id = meaning_hash(job)
    write_json(store / "jobs" / job_id / "record.json",
               {"schema": "lpft-bench/record/v1", "job_id": job_id, "job": job, "status": "failed", "error": "boom"})
    return job_id


def write_baselines(store):
    """ft at two learning rates (1e-3 wins on ID validation) and lp, two seeds each."""
    records = []
    for seed in (0, 1):
        records.append(write_record(store, "ft", seed, {"lr": 1e-3}, 0.90 + 0.02 * seed, distance=2.0 + seed))
        records.append(write_record(store, "ft", seed, {"lr": 1e-2}, 0.70, distance=50.0))
        records.append(write_record(store, "lp", seed, {}, 0.85 + 0.01 * seed, probe_only=True))
    return records


TAUS = (0, 5, 20)


def write_head_probing_sweep(store):
    """hp-ft over τ (and, at τ = 5, a losing learning rate), plus lshp-ft at η = 0.3: two seeds each."""
    records = []
    for seed in (0, 1):
        for tau in TAUS:
            records.append(write_record(store, "hp-ft", seed, {"hp_epochs": tau, "lr": 1e-3}, 0.8 + tau / 200 + seed / 50,
                                        energy=0.9 - tau / 50 + seed / 10, distance=3.0 - tau / 10 + seed))
        records.append(write_record(store, "hp-ft", seed, {"hp_epochs": 5, "lr": 1e-2}, 0.5, energy=7.0, distance=70.0))
        for tau in (5, 20):
            records.append(write_record(store, "lshp-ft", seed, {"hp_epochs": tau, "hp_smoothing": 0.3, "lr": 1e-3},
                                        0.85, energy=1.5 + seed, distance=4.0))
    return records


@pytest.fixture(scope="module")
def full_store(tmp_path_factory):
    store = tmp_path_factory.mktemp("store")
    records = write_baselines(store) + write_head_probing_sweep(store)
    failed = write_failed(store)
    report = write_report(store)
    return store, report, records, failed


def test_report_writes_every_figure_with_its_numbers_and_references_it(full_store):
    store, report, _, failed = full_store
    assert report == store / "report" / "report.md"
    text = report.read_text()
    pngs = {"id_vs_ood_digits.png", "feature_change_digits.png", "head_probing_digits.png",
            "head_probing_vs_hp_acc_digits.png"}
    assert {p.name for p in report.parent.glob("*.png")} == pngs
    for png in pngs:
        assert (report.parent / png).read_bytes().startswith(PNG_SIGNATURE)
        assert f"]({png})" in text
        assert not pd.read_csv(report.parent / png.replace(".png", ".csv")).empty
    assert (report.parent / "id.csv").exists() and (report.parent / "ood.csv").exists()
    assert failed in text and "1 failed" in text
    assert "no ID numbers for digits" in text and "no OOD numbers for digits" in text


def test_id_vs_ood_numbers_are_the_tables_mean_and_90_percent_interval(full_store):
    _, report, records, _ = full_store
    points = pd.read_csv(report.parent / "id_vs_ood_digits.csv")
    ft = [r for r in records if r["job"]["strategy"] == "ft" and r["job"]["hparams"] == {"lr": 1e-3}]
    mild = pd.Series([100 * r["final"]["rotated-mild"] for r in ft])
    row = points[(points["strategy"] == "ft") & (points["ood_set"] == "rotated-mild")].iloc[0]
    assert row["ood_mean"] == pytest.approx(mild.mean(), abs=0.01)
    assert row["ood_ci90"] == pytest.approx(1.645 * mild.std() / math.sqrt(2), abs=0.01)
    assert row["id_mean"] == pytest.approx(pd.Series([100 * r["final"]["id_test"] for r in ft]).mean(), abs=0.01)
    assert set(points["strategy"]) == {"ft", "lp", "hp-ft", "lshp-ft"}


def test_feature_change_comes_from_the_selected_hyperparameters_only(full_store):
    _, report, records, _ = full_store
    change = pd.read_csv(report.parent / "feature_change_digits.csv")
    ft = [r for r in records if r["job"]["strategy"] == "ft" and r["job"]["hparams"] == {"lr": 1e-3}]
    id_distance = [(r["phases"][-1]["feature_change"]["id_val"]["distance"]
                    + r["phases"][-1]["feature_change"]["id_test"]["distance"]) / 2 for r in ft]
    row = change[(change["strategy"] == "ft") & (change["split"] == "id") & (change["metric"] == "distance")].iloc[0]
    assert row["mean"] == pytest.approx(sum(id_distance) / 2)
    assert row["seeds"] == 2
    assert "lp" not in set(change["strategy"])  # no fine-tuning phase, no feature change


def test_head_probing_sweep_is_mean_and_std_over_seeds_per_tau_and_series(full_store):
    _, report, records, _ = full_store
    sweep = pd.read_csv(report.parent / "head_probing_digits.csv")
    energy = sweep[sweep["metric"] == "average_initial_energy"]
    assert set(energy["series"]) == {"hp-ft", "lshp-ft η=0.3"}
    for tau in TAUS:
        chosen = [r["phases"][-1]["start"]["average_initial_energy"] for r in records
                  if r["job"]["strategy"] == "hp-ft" and r["job"]["hparams"] == {"hp_epochs": tau, "lr": 1e-3}]
        row = energy[(energy["series"] == "hp-ft") & (energy["tau"] == tau)].iloc[0]
        assert row["mean"] == pytest.approx(pd.Series(chosen).mean())
        assert row["std"] == pytest.approx(pd.Series(chosen).std())
        assert row["seeds"] == 2
    smoothed = energy[energy["series"] == "lshp-ft η=0.3"]
    assert list(smoothed["tau"]) == [5, 20] and list(smoothed["mean"]) == pytest.approx([2.0, 2.0])
    accuracy = sweep[(sweep["metric"] == "ft_val_acc") & (sweep["series"] == "hp-ft") & (sweep["tau"] == 20)].iloc[0]
    assert accuracy["mean"] == pytest.approx(100 * (0.8 + 0.1 + 0.01))


def test_figure_4_has_a_column_per_backbone_and_plots_against_hp_train_accuracy(tmp_path):
    for backbone, offset in (("digits-resnet", 0.0), ("digits-mlp", 0.05)):
        for tau in TAUS:
            write_record(tmp_path, "hp-ft", 0, {"hp_epochs": tau}, 0.7 + offset + tau / 100, backbone=backbone,
                         distance=3.0 - tau / 10, hp_train_acc=0.2 + tau / 40)
    report = write_report(tmp_path)
    sweep = pd.read_csv(report.parent / "head_probing_digits.csv")
    assert set(sweep["backbone"]) == {"digits-resnet", "digits-mlp"}
    assert set(sweep["metric"]) == {"ft_val_acc", "hp_train_acc", "average_initial_energy", "distance", "cosine",
                                    "dot", "norm"}
    points = pd.read_csv(report.parent / "head_probing_vs_hp_acc_digits.csv").set_index(["backbone", "tau"])
    for tau in TAUS:
        assert points.loc[("digits-mlp", tau), "hp_train_acc_mean"] == pytest.approx(100 * (0.2 + tau / 40))
        assert points.loc[("digits-mlp", tau), "ft_val_acc_mean"] == pytest.approx(100 * (0.75 + tau / 100))
        assert points.loc[("digits-resnet", tau), "distance_mean"] == pytest.approx(3.0 - tau / 10)
    assert points["ft_val_acc_std"].isna().all()  # one seed: no spread to show, and no row lost for it
    assert "Not computed: `lpft-bench swap" in report.read_text()


def test_store_without_head_probing_says_so_and_runs_from_the_command_line(tmp_path, capsys):
    write_baselines(tmp_path)
    parser = argparse.ArgumentParser()
    add_report_arguments(parser)
    assert main_report(parser.parse_args(["--store", str(tmp_path), "--out", str(tmp_path / "elsewhere")])) == 0
    report = tmp_path / "elsewhere" / "report.md"
    assert str(report) in capsys.readouterr().out
    assert "No head-probing sweep in this store" in report.read_text()
    assert not list(report.parent.glob("head_probing_*"))
    assert (report.parent / "id_vs_ood_digits.png").read_bytes().startswith(PNG_SIGNATURE)


def test_a_corrupt_record_is_named_and_the_report_holds_everything_else(tmp_path, capsys):
    write_baselines(tmp_path)
    clean = write_report(tmp_path, tmp_path / "clean")
    garbled = tmp_path / "jobs" / "0123456789abcdef" / "record.json"
    garbled.parent.mkdir()
    garbled.write_text('{"job_id": "\x01 not json')
    capsys.readouterr()
    report = write_report(tmp_path)
    assert f"skipped {garbled}" in capsys.readouterr().err
    assert report.read_text() == clean.read_text()
    for table in clean.parent.glob("*.csv"):
        assert (report.parent / table.name).read_text() == table.read_text()


def test_empty_store_reports_what_is_missing(tmp_path):
    write_failed(tmp_path)
    text = write_report(tmp_path).read_text()
    assert "0 finished job(s); 1 failed" in text
    assert "no finished jobs" in text and "No head-probing sweep in this store" in text
    assert "No OOD sets" not in text  # nothing finished says nothing about OOD sets
    assert "no feature change to show" in text
    assert not list((tmp_path / "report").glob("*.png"))


def test_paper_numbers_stand_beside_matching_benchmarks(tmp_path):
    for seed in (0, 1):
        write_record(tmp_path, "ft", seed, {}, 0.95, sets=LIVING17_SETS, benchmark="living17")
        write_record(tmp_path, "lp-ft", seed, {}, 0.96, sets=LIVING17_SETS, benchmark="living17")
    report = write_report(tmp_path)
    id_paper = pd.read_csv(report.parent / "id_vs_paper.csv").set_index("strategy")
    ood_paper = pd.read_csv(report.parent / "ood_vs_paper.csv").set_index("strategy")
    assert id_paper.loc["ft", "paper"] == 97.1 and id_paper.loc["ft", "mean"] == pytest.approx(94.0)
    assert ood_paper.loc["lp-ft", "paper"] == 82.6 and ood_paper.loc["lp-ft", "column"] == "living17:living17-target"
    text = report.read_text()
    assert "97.1" in text and "no paper comparison" not in text
