"""Every job id and phase key the suites produce, pinned: a refactor that changes one orphans results stores.

Regenerate deliberately (and say why in the commit) with `LPFT_BENCH_UPDATE_GOLDEN=1 python -m pytest tests/test_golden_ids.py`."""
import json
import os
from pathlib import Path

import torch
from safetensors.torch import save_file

from lpft_bench.engine import Job, phase_key
from lpft_bench.strategies import get_strategy
from lpft_bench.suites import SUITES

GOLDEN = Path(__file__).parent / "golden" / "job_ids.json"


def _extra_jobs(tmp_path: Path) -> dict[str, Job]:
    """A user's timm backbone with a local checkpoint of fixed content, and a folder dataset (files of fixed
    names and sizes: what a folder's identity is made of)."""
    checkpoint = tmp_path / "weights.safetensors"
    save_file({"weight": torch.arange(12, dtype=torch.float32).reshape(3, 4)}, str(checkpoint))
    for split, size in (("train", 100), ("test", 60), ("blur", 30)):
        for label in ("cat", "dog"):
            (tmp_path / split / label).mkdir(parents=True)
            (tmp_path / split / label / "0001.png").write_bytes(bytes(size))
    folder = {"train": str(tmp_path / "train"), "id_eval": str(tmp_path / "test"), "ood": {"blur": str(tmp_path / "blur")}}
    return {
        "timm-checkpoint": Job("digits", "lp-ft", 0, backbone="timm:resnet18", checkpoint=str(checkpoint),
                               hparams={"lr": 1e-4}),
        "folder": Job("folder", "ft", 1, backbone="efficientnet-lite0", hparams={"lr": 1e-3, "epochs": 3},
                      benchmark_options=folder),
    }


def _identities(jobs: dict[str, Job]) -> dict[str, dict]:
    table = {}
    for label, job in jobs.items():
        phases = get_strategy(job.strategy).phases(job.hparams)
        table[label] = {"id": job.id, "phases": [phase_key(job, phases, i) for i in range(len(phases))]}
    return table


def current_identities(tmp_path: Path) -> dict[str, dict]:
    jobs = {}
    for suite in SUITES.values():
        for job in suite.expand():
            hparams = ",".join(f"{k}={v}" for k, v in sorted(job.hparams.items()))
            # By the labels a suite shows: one benchmark under two labels (two backbones) is two entries.
            key = f"{suite.name}/{job.label('benchmark')}/{job.label('strategy')}/{hparams}/seed={job.seed}"
            assert key not in jobs, f"two jobs of suite {suite.name} would share the golden entry {key}"
            jobs[key] = job
    jobs.update(_extra_jobs(tmp_path))
    return _identities(jobs)


def sup_c10_stand_ins(directory: Path) -> Path:
    """A job on Sup-C10 is identified by the sha256 of the file `lpft-bench pretrain cifar10` made on its machine:
    here stand-ins of fixed bytes, so those ids are pinned relative to them. The folder to point
    $LPFT_BENCH_CHECKPOINTS at."""
    directory.mkdir(parents=True, exist_ok=True)
    for arch in ("resnet18", "resnet50"):
        (directory / f"sup-c10-{arch}.safetensors").write_bytes(f"golden stand-in for sup-c10-{arch}".encode())
    return directory


def test_every_job_id_and_phase_key_is_pinned(tmp_path, monkeypatch):
    monkeypatch.setenv("LPFT_BENCH_CHECKPOINTS", str(sup_c10_stand_ins(tmp_path / "checkpoints")))
    current = current_identities(tmp_path)
    if os.environ.get("LPFT_BENCH_UPDATE_GOLDEN"):
        GOLDEN.write_text(json.dumps(current, indent=1, sort_keys=True) + "\n")
    golden = json.loads(GOLDEN.read_text())
    assert sorted(current) == sorted(golden), "jobs appeared or vanished from the suites"
    changed = [label for label in golden if current[label] != golden[label]]
    assert not changed, f"{len(changed)} job ids or phase keys changed, e.g. {changed[:3]}"
