"""Identity is a function of the meaning only: the same on every CPU, unchanged by a field added at its default,
and a store written under identity v1 is re-keyed, never rerun (golden ids themselves: test_golden_ids.py)."""
import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import MISSING, field, fields, make_dataclass
from pathlib import Path

import numpy as np

from lpft_bench.cli import main
from lpft_bench.engine import Job, phase_key
from lpft_bench.engine.identity import job_id
from lpft_bench.engine.migrations import STORE_FILE, V1, store_version
from lpft_bench.engine.identity import meaning_hash
from lpft_bench.meaning import canonical
from lpft_bench.strategies import PAPER_PROBE_CS, get_strategy
from lpft_bench.strategies.phases import Phase

TESTS = Path(__file__).parent
GOLDEN_DEFAULTS = TESTS / "golden" / "phase_defaults.json"
SIMD_OFF = "AVX512_SPR AVX512_ICL X86_V4"


def test_golden_ids_are_the_same_with_numpys_simd_dispatch_on_and_off(tmp_path):
    """Each process computes every golden id afresh; numpy's SIMD dispatch (AVX-512 where the CPU has it)
    is left on in one and turned off in the other. Both must equal the golden file."""
    script = ("import hashlib, json, sys, tempfile, pathlib; sys.path.insert(0, sys.argv[1]);"
              "from test_golden_ids import current_identities;"
              "ids = current_identities(pathlib.Path(tempfile.mkdtemp()));"
              "print(hashlib.sha256(json.dumps(ids, sort_keys=True).encode()).hexdigest())")
    from test_golden_ids import sup_c10_stand_ins

    digests = {}
    checkpoints = str(sup_c10_stand_ins(tmp_path / "checkpoints"))
    for label, disabled in (("dispatch on", None), ("dispatch off", SIMD_OFF)):
        env = {k: v for k, v in os.environ.items() if k != "NPY_DISABLE_CPU_FEATURES"}
        env["LPFT_BENCH_CHECKPOINTS"] = checkpoints
        if disabled:
            env["NPY_DISABLE_CPU_FEATURES"] = disabled
        done = subprocess.run([sys.executable, "-c", script, str(TESTS)], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        digests[label] = done.stdout.strip()
    golden = json.loads((TESTS / "golden" / "job_ids.json").read_text())
    assert digests["dispatch on"] == digests["dispatch off"] == hashlib.sha256(
        json.dumps(golden, sort_keys=True).encode()).hexdigest()


def test_a_grid_computed_one_rounding_step_otherwise_changes_no_id(monkeypatch):
    """What an AVX-512 numpy does to logspace(-7, 2, 50)[30]: the id must not see it, because the phase holds
    the grid's specification and hashes that, never the floats."""
    jobs = [Job("digits", strategy, 0) for strategy in ("lp", "lp-ft", "wise-ft")]
    before = [(job.id, phase_key(job, get_strategy(job.strategy).phases(), 0)) for job in jobs]
    exact = np.logspace
    monkeypatch.setattr(np, "logspace", lambda *a, **k: np.nextafter(exact(*a, **k), np.inf))
    assert PAPER_PROBE_CS.values != tuple(float(c) for c in exact(-7, 2, 50))  # the grid did move
    jobs = [Job("digits", strategy, 0) for strategy in ("lp", "lp-ft", "wise-ft")]
    assert [(job.id, phase_key(job, get_strategy(job.strategy).phases(), 0)) for job in jobs] == before
    assert PAPER_PROBE_CS.describe() == {"logspace": [-7, 2, 50]}


def test_floats_are_hashed_as_their_canonical_decimal():
    """A float one rounding step off (any computation's last bit) means the same thing; ints and bools keep
    their type; a different value is a different hash."""
    lr = 0.1 + 0.2  # 0.30000000000000004
    assert canonical(lr) == 0.3 and meaning_hash({"lr": lr}) == meaning_hash({"lr": 0.3})
    assert meaning_hash({"lr": np.nextafter(1e-3, 1.0)}) == meaning_hash({"lr": 1e-3})
    assert meaning_hash({"lr": 1e-3}) != meaning_hash({"lr": 1.001e-3})
    assert canonical({"a": (1, True, np.float32(0.5), -0.0)}) == {"a": [1, True, 0.5, 0.0]}
    assert meaning_hash({"x": 1}) != meaning_hash({"x": True}) and meaning_hash({"x": 1}) != meaning_hash({"x": "1"})


def test_a_phase_field_added_at_its_default_changes_no_id():
    """The description drops default-valued fields generically: no hand-kept list to forget."""
    Extended = make_dataclass("Extended", [("dropout", float, field(default=0.0))], bases=(Phase,), frozen=True)
    plain = Phase("ft", trains="all", epochs=3, lr=1e-3)
    extended = Extended("ft", trains="all", epochs=3, lr=1e-3)
    assert extended.describe() == plain.describe() == {"name": "ft", "trains": "all", "epochs": 3, "lr": 1e-3}
    assert Extended("ft", trains="all", epochs=3, lr=1e-3, dropout=0.1).describe()["dropout"] == 0.1


def test_phase_defaults_are_pinned_because_every_identity_omits_them():
    """A default that moved would silently give the phases that used it the identity of another meaning."""
    defaults = {f.name: list(f.default) if isinstance(f.default, tuple) else f.default
                for f in fields(Phase) if f.default is not MISSING}
    assert defaults == json.loads(GOLDEN_DEFAULTS.read_text())


ARGS = ["run", "--strategies", "lp", "lp-ft", "--seeds", "0", "--epochs", "2", "--subset", "60", "--set", "lr=0.001"]


def _as_written_by_v1(store: Path, foreign_key_for: str) -> None:
    """Turn a store into what lpft-bench wrote before identity v2: v1 ids and keys everywhere, no store.json.
    The `foreign_key_for` phase gets a key this machine would not compute (a store written on a CPU that
    rounded the v1 grid otherwise): only the job's own logs tell the migration which phase it is."""
    (store / STORE_FILE).unlink()
    old_ids = {}
    for job_dir in list((store / "jobs").iterdir()):
        record = json.loads((job_dir / "record.json").read_text())
        job = Job.from_dict(record["job"])
        phases = get_strategy(job.strategy).phases(job.hparams)
        for index in range(len(phases)):
            new, old = phase_key(job, phases, index), phase_key(job, phases, index, V1)
            if new == f"{index}-{foreign_key_for}-{new.rsplit('-', 1)[1]}":
                old = f"{index}-{foreign_key_for}-0123456789abcdef"
            for folder in (store / "phases", job_dir / "logs"):
                if (folder / new).exists():
                    (folder / new).rename(folder / old)
            if record["phases"][index].get("reused") == new:
                record["phases"][index]["reused"] = old
        old_ids[job.id] = job_id(job, V1)
        record["job_id"] = old_ids[job.id]
        (job_dir / "record.json").write_text(json.dumps(record))
        job_dir.rename(job_dir.with_name(old_ids[job.id]))
    matrix = json.loads((store / "matrix.json").read_text())
    (store / "matrix.json").write_text(json.dumps({"jobs": [old_ids[i] for i in matrix["jobs"]]}))


def test_a_store_written_under_identity_v1_is_rekeyed_and_nothing_reruns(tmp_path, capsys):
    store = tmp_path / "store"
    assert main([*ARGS, "--out", str(store)]) == 0
    assert store_version(store) == 2
    records = {p.parent.name: p.read_bytes() for p in (store / "jobs").glob("*/record.json")}
    phases = sorted(p.name for p in (store / "phases").iterdir())
    assert len(records) == 2 and len(phases) == 2  # lp's probe (shared with lp-ft), lp-ft's FT
    pristine = tmp_path / "pristine"
    shutil.copytree(store, pristine)

    _as_written_by_v1(store, foreign_key_for="ft")
    assert store_version(store) == 1 and not set(records) & {p.name for p in (store / "jobs").iterdir()}
    capsys.readouterr()
    assert main([*ARGS, "--out", str(store)]) == 0
    err = capsys.readouterr().err
    assert "re-keyed from identity v1 to v2: 2 job(s), 2 phase result(s)" in err
    # Nothing ran again: every record is byte for byte the one the first run wrote, under its v2 id.
    assert {p.parent.name: p.read_bytes() for p in (store / "jobs").glob("*/record.json")} == records
    assert sorted(p.name for p in (store / "phases").iterdir()) == phases
    assert sorted(p.name for p in (store / "jobs" / next(iter(records)) / "logs").iterdir()) == sorted(
        p.name for p in (pristine / "jobs" / next(iter(records)) / "logs").iterdir())
    assert json.loads((store / "matrix.json").read_text()) == json.loads((pristine / "matrix.json").read_text())
    assert store_version(store) == 2
