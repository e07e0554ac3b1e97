"""Weights a store chooses to keep (`--keep-weights`): a probe over the frozen backbone keeps its head alone,
every policy and `prune` keep every record and every weight a pending job's later phase reads, and a rerun
after pruning retrains nothing that finished."""
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from lpft_bench.cli import main
from lpft_bench.cli_parser import KEEP_WEIGHTS
from lpft_bench.engine import Job, RunContext, phase_key
from lpft_bench.engine.retention import (DEFAULT_POLICY, POLICIES, apply_policy, computed_phases,
                                         weights_written, with_ingredients, worker_context)
from lpft_bench.preflight import disk_plan
from lpft_bench.runner import run_matrix
from lpft_bench.strategies import get_strategy

TINY = {"subset": 60}
FINISHED = [Job("digits", "lp", seed=0, benchmark_options=TINY),
            Job("digits", "lp-ft", seed=0, hparams={"epochs": 1}, benchmark_options=TINY),
            Job("digits", "hp-ft", seed=0, hparams={"epochs": 1, "hp_epochs": 1}, benchmark_options=TINY)]
# Not run yet: its FT phase reads the probe the finished lp and lp-ft jobs share.
PENDING = Job("digits", "lp-ft", seed=0, hparams={"epochs": 1, "lr": 1e-3}, benchmark_options=TINY)


def _keys(job):
    phases = get_strategy(job.strategy).phases(job.hparams)
    return [phase_key(job, phases, i) for i in range(len(phases))]


def _weights_bytes(store):
    return sum(p.stat().st_size for p in store.phases_dir.rglob("*.safetensors"))


def _records(store):
    return sorted(str(p.relative_to(store)) for p in store.rglob("record.json"))


@pytest.fixture(scope="module")
def finished_store(tmp_path_factory):
    ctx = RunContext(out=tmp_path_factory.mktemp("keep") / "store", accelerator="cpu")
    result = run_matrix(FINISHED, ctx, progress=False)
    assert (result.done, result.failed) == (3, 0)
    return ctx.out


def test_the_parser_offers_the_engine_policies():
    assert KEEP_WEIGHTS == POLICIES and DEFAULT_POLICY == "none"


@pytest.mark.slow
def test_a_probe_over_the_frozen_backbone_stores_its_head_and_the_backbone_digest(finished_store):
    for job in (FINISHED[0], FINISHED[2]):  # the logistic probe, and hp-ft's SGD head probe
        probe = finished_store / "phases" / _keys(job)[0]
        assert not (probe / "model.safetensors").exists()
        assert set(load_file(str(probe / "head.safetensors"))) == {"head.weight", "head.bias"}
        assert len(json.loads((probe / "record.json").read_text())["backbone_sha256"]) == 64
    fine_tuned = finished_store / "phases" / _keys(FINISHED[1])[1]
    assert any(name.startswith("backbone.") for name in load_file(str(fine_tuned / "model.safetensors")))


@pytest.mark.slow
@pytest.mark.parametrize("policy", POLICIES)
def test_every_policy_keeps_every_record_and_what_a_pending_job_reads_and_the_rerun_retrains_nothing(
        finished_store, tmp_path, policy):
    store = tmp_path / "store"
    shutil.copytree(finished_store, store)
    records = _records(store)
    weights = sorted(p for p in (store / "phases").rglob("*.safetensors"))
    ctx = RunContext(out=store, accelerator="cpu")
    jobs = [*FINISHED, PENDING]
    removed, _ = apply_policy(ctx.store, jobs, policy)
    assert _records(store) == records, "records are never dropped"
    probe = store / "phases" / _keys(PENDING)[0]
    assert (probe / "head.safetensors").exists(), "the pending lp-ft's FT reads the shared probe"
    hp_ft_final = store / "phases" / _keys(FINISHED[2])[-1]
    assert list(hp_ft_final.glob("*.safetensors")), "the report reads hp-ft's fine-tuned weights"
    lp_ft_final = store / "phases" / _keys(FINISHED[1])[-1]
    if policy == "all":
        assert removed == []
    if policy == "selected":
        assert list(lp_ft_final.glob("*.safetensors")), "each job's selected weights"
    if policy == "none":
        assert not list(lp_ft_final.glob("*.safetensors")) and removed
    assert sorted(p for p in (store / "phases").rglob("*.safetensors")) == sorted(set(weights) - set(removed))

    result = run_matrix(jobs, ctx, progress=False)
    assert (result.skipped, result.done, result.failed) == (3, 1, 0), "finished jobs are not retrained"
    rerun = ctx.store.load_record(PENDING.id)
    assert rerun["phases"][0]["reused"] == _keys(PENDING)[0], "the probe was loaded, not refitted"


@pytest.mark.slow
def test_a_run_writes_no_weights_its_policy_would_prune_unread_and_a_job_cut_before_its_record_recomputes(
        finished_store, tmp_path):
    """What `lpft-bench run` does under the default policy: the weights that end a job and that neither the
    policy nor another job reads are never written; the store it leaves is the one a run writing every weights
    file leaves once pruned, with the same results."""
    ctx = RunContext(out=tmp_path / "store", accelerator="cpu", weights_written=weights_written(FINISHED, DEFAULT_POLICY))
    assert run_matrix(FINISHED, ctx, progress=False).done == 3
    lp_ft_final = ctx.out / "phases" / _keys(FINISHED[1])[-1]
    assert (lp_ft_final / "record.json").is_file() and not list(lp_ft_final.glob("*.safetensors"))
    assert (ctx.out / "phases" / _keys(FINISHED[0])[0] / "head.safetensors").is_file(), "lp-ft reads lp's probe"
    for path in ctx.store.job_dir(FINISHED[1].id).glob("*"):  # cut after its last phase's record, before its own
        if path.is_file():
            path.unlink()
    apply_policy(ctx.store, FINISHED, DEFAULT_POLICY)  # as the cut matrix's end, or `lpft-bench prune`, would
    assert (ctx.out / "phases" / _keys(FINISHED[0])[0] / "head.safetensors").is_file(), "the cut job reads it"
    assert run_matrix(FINISHED, ctx, progress=False).done == 1
    rerun = ctx.store.load_record(FINISHED[1].id)
    assert rerun["phases"][0]["reused"] == _keys(FINISHED[1])[0] and "reused" not in rerun["phases"][-1]

    apply_policy(ctx.store, FINISHED, DEFAULT_POLICY)
    pruned = RunContext(out=tmp_path / "pruned").store
    shutil.copytree(finished_store, pruned.root)
    apply_policy(pruned, FINISHED, DEFAULT_POLICY)

    def weights(store):
        return sorted(str(p.relative_to(store.root)) for p in store.phases_dir.rglob("*.safetensors"))

    assert weights(ctx.store) == weights(pruned) and weights(pruned)
    for job in FINISHED:
        assert ctx.store.load_record(job.id)["final"] == pruned.load_record(job.id)["final"]


def test_a_phase_run_after_a_stored_one_draws_what_it_draws_after_computing_it(tmp_path, monkeypatch):
    """The random generators as a phase ended are stored with it: a job that loads the phase (another job ran it,
    or this one resumes after it) goes on drawing as if it had computed it. Here lp-ft's FT after an SGD probe,
    recomputed after a cut before the job's record (the default policy writes its record alone), starts where the
    uninterrupted run did (the probe's epochs drew from the global generator: the states differ from the start's)."""
    from lpft_bench.strategies.kinds.gradient import GradientPhase

    starts = []
    run = GradientPhase.run

    def recording(self, phase, context):
        starts.append((phase.name, torch.get_rng_state()))
        return run(self, phase, context)

    monkeypatch.setattr(GradientPhase, "run", recording)
    job = Job("digits", "lp-ft", seed=0, hparams={"epochs": 1, "probe": "sgd", "hp_epochs": 1}, benchmark_options=TINY)
    ctx = RunContext(out=tmp_path / "store", accelerator="cpu", weights_written=weights_written([job], DEFAULT_POLICY))
    assert run_matrix([job], ctx, progress=False).done == 1
    for path in ctx.store.job_dir(job.id).glob("*"):
        if path.is_file():
            path.unlink()
    assert run_matrix([job], ctx, progress=False).done == 1
    (hp, first), (ft, uninterrupted), (again, resumed) = starts
    assert (hp, ft, again) == ("lp", "ft", "ft") and not torch.equal(first, uninterrupted)
    assert torch.equal(uninterrupted, resumed)
    assert ctx.store.load_record(job.id)["phases"][0]["reused"] == _keys(job)[0]


def test_jobs_that_end_with_the_same_phase_run_it_once_under_every_policy(tmp_path):
    """Two lp jobs whose ids differ by a setting the logistic probe ignores (hp_lr) end with one phase key: the
    first writes that phase's weights, so the second loads it instead of fitting the probe again."""
    twins = [Job("digits", "lp", seed=0, benchmark_options=TINY),
             Job("digits", "lp", seed=0, hparams={"hp_lr": 0.5}, benchmark_options=TINY)]
    assert twins[0].id != twins[1].id and _keys(twins[0]) == _keys(twins[1])
    ctx = RunContext(out=tmp_path / "store", accelerator="cpu", weights_written=weights_written(twins, DEFAULT_POLICY))
    assert run_matrix(twins, ctx, progress=False).done == 2
    first, second = (ctx.store.load_record(job.id) for job in twins)
    assert "reused" not in first["phases"][0] and second["phases"][0]["reused"] == _keys(twins[1])[0]
    assert first["final"] == second["final"]


@pytest.mark.slow
def test_the_disk_plan_counts_a_phase_stored_as_a_record_alone_that_a_later_matrix_recomputes(tmp_path):
    """lp-ft's FT writes its record alone under the default policy; a later wise-ft job interpolates from the FT
    weights, so it recomputes that phase. The plan counts what the engine then computes: the FT's checkpoints and
    weights, not only the interpolation."""
    lp_ft = FINISHED[1]
    wise = Job("digits", "wise-ft", seed=0, hparams=lp_ft.hparams, benchmark_options=TINY)
    assert _keys(wise)[:2] == _keys(lp_ft)
    ctx = RunContext(out=tmp_path / "store", accelerator="cpu", weights_written=weights_written([lp_ft], DEFAULT_POLICY))
    assert run_matrix([lp_ft], ctx, progress=False).done == 1
    assert ctx.store.phase_done(_keys(lp_ft)[1]) and not ctx.store.phase_weight_files(_keys(lp_ft)[1])

    predicted = computed_phases(wise, ctx.store)
    assert predicted == _keys(wise)[1:], "the probe head is loaded; the FT and the interpolation are computed"
    plan = disk_plan([wise], ctx.out, DEFAULT_POLICY)
    assert plan.peak > 0, "the FT's resume checkpoints are counted"
    before = _weights_bytes(ctx.store)
    run = RunContext(out=ctx.out, accelerator="cpu", weights_written=weights_written([wise], DEFAULT_POLICY))
    assert run_matrix([wise], run, progress=False).done == 1
    phases = run.store.load_record(wise.id)["phases"]
    assert [key for key, phase in zip(_keys(wise), phases) if "reused" not in phase] == predicted
    written = _weights_bytes(run.store) - before
    assert written > 0 and plan.written - plan.features - plan.records >= 0.95 * written, \
        "the FT weights the interpolation reads are counted"


def test_lpft_bench_run_writes_by_its_policy_and_prunes_only_what_a_finished_matrix_no_longer_reads(tmp_path, capsys):
    """Through the command line: lp-ft's fine-tuned weights are never written under the default policy; the one
    probe head its three learning rates start from is written, then dropped when the matrix is done."""
    store = tmp_path / "store"
    assert main(["run", "--strategies", "lp-ft", "--seeds", "0", "--subset", "60", "--epochs", "1",
                 "--out", str(store)]) == 0
    assert "--keep-weights none: removed 1 phase weights file(s)" in capsys.readouterr().err
    finals = [d for d in (store / "phases").iterdir() if d.name.startswith("1-")]
    assert len(finals) == 3 and all((d / "record.json").is_file() for d in finals)
    assert not list((store / "phases").rglob("*.safetensors"))


def test_a_worker_gets_the_written_weights_of_its_own_phases_and_ingredients_alone(tmp_path):
    """A worker's arguments carry its share of `weights_written`: their size does not grow with the matrix."""
    soup = Job("digits", "uniform-soup", seed=0, hparams={"epochs": 1}, benchmark_options=TINY)
    jobs = [*FINISHED, PENDING, soup]
    written = weights_written(jobs, "selected")
    ctx = RunContext(out=tmp_path, weights_written=written)
    for job in jobs:
        own = {key for each in with_ingredients([job]) for key in _keys(each)}
        assert worker_context(job, ctx).weights_written == {k: v for k, v in written.items() if k in own}
    ingredients = [job for job in with_ingredients([soup]) if job is not soup]
    assert ingredients and all(_keys(job)[-1] in worker_context(soup, ctx).weights_written for job in ingredients), \
        "the soup starts from its ingredients' results"
    assert worker_context(soup, RunContext(out=tmp_path)).weights_written is None


@pytest.mark.slow
def test_prune_drops_weights_by_policy_and_status_shows_the_size_by_kind(finished_store, tmp_path, capsys):
    store = tmp_path / "store"
    shutil.copytree(finished_store, store)
    records = _records(store)
    assert main(["prune", "--out", str(store), "--keep-weights", "none", "--dry-run"]) == 0
    assert "would remove" in capsys.readouterr().out and len(list(store.rglob("*.safetensors"))) > 1
    assert main(["prune", "--out", str(store), "--keep-weights", "none"]) == 0
    assert "phase weights file(s)" in capsys.readouterr().out
    assert _records(store) == records
    kept = sorted(p.parent.name for p in (store / "phases").rglob("*.safetensors"))
    assert kept == [_keys(FINISHED[2])[-1]], "none keeps the hp-ft job's final weights alone"
    assert main(["status", "--out", str(store)]) == 0
    line = next(row for row in capsys.readouterr().out.splitlines() if "size:" in row)
    assert all(kind in line for kind in ("weights", "features", "checkpoints", "records and logs"))


def test_the_retained_weights_shrink_from_all_to_selected_to_none(tmp_path, capsys):
    jobs = [*FINISHED, PENDING, Job("digits", "ft", seed=0, hparams={"epochs": 3}, benchmark_options=TINY)]
    retained = [disk_plan(jobs, tmp_path, policy).retained_weights for policy in ("all", "selected", "none")]
    assert retained[0] > retained[1] > retained[2] > 0
    assert main(["run", "--suite", "quickstart", "--dry-run", "--out", str(tmp_path)]) == 0
    assert "disk, --keep-weights none:" in capsys.readouterr().out


@pytest.mark.slow
def test_a_head_whose_backbone_digest_differs_is_never_loaded_and_its_phase_recomputed(finished_store, tmp_path, capsys):
    store = tmp_path / "store"
    shutil.copytree(finished_store, store)
    record = store / "phases" / _keys(PENDING)[0] / "record.json"
    changed = {**json.loads(record.read_text()), "backbone_sha256": "0" * 64}
    record.write_text(json.dumps(changed))
    ctx = RunContext(out=store, accelerator="cpu")
    assert run_matrix([PENDING], ctx, progress=False).done == 1
    assert "reused" not in ctx.store.load_record(PENDING.id)["phases"][0]
    assert "another backbone" in capsys.readouterr().err
