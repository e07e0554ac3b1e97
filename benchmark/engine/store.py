"""A results store: every path in it, and how each file gets there without ever being half-written.

<out>/store.json            the identity scheme the store is written under (engine.migrations reads older ones)
<out>/matrix.json           the job ids of the matrix it was last run with
<out>/jobs/<job id>/        record.json (then the `done` marker), lock, progress.json, worker.log, logs/<phase key>/,
                            checkpoints/<phase key>/; a soup's ingredients and a pinned phase's run keep the same
                            layout under ingredients/<job id>/ and pinned/seed-<n>/
<out>/phases/<phase key>/   the weights after a prefix of phases (store_files), then record.json
<out>/features/             eval-mode backbone features, keyed by what they depend on (identity.feature_key)

A file that cannot be read (a record overwritten with garbage, a phase result or checkpoint truncated by a full
disk) is that job's problem alone: it is named, moved aside as `<name>.corrupt-<n>` (never deleted) and its
result recomputed. Nothing else spells a path of the store: every module goes through `Store`."""
from __future__ import annotations

import fcntl
import json
import shutil
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np

from lpft_bench.checks import inside
from lpft_bench.faults import fault_point
from lpft_bench.storage import atomic_write, set_aside, write_json

import lpft_bench.engine.store_files as store_files  # the module, not the package: its __init__ imports this one
from .store_files import CorruptFile, finite

if TYPE_CHECKING:
    from lpft_bench.strategies.kinds import PhaseFiles

DONE_MARKER = "done"
RECORD = "record.json"
LOGS = "logs"  # Lightning's logger `name`: <work dir>/logs/<phase key>/
STORE_FILE = "store.json"
MATRIX_FILE = "matrix.json"
LOCK_ATTEMPTS = 20
DONE_RECORD_KEYS = ("job", "eval_sets", "selection", "final")


class Store:
    """The results store at `root`: paths, records, phase results, the feature cache, locks and repair."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    # Paths. Each one built from a label (job id, phase key, set name) is checked to stay inside the store.
    @property
    def jobs_dir(self) -> Path:
        return self.root / "jobs"

    @property
    def phases_dir(self) -> Path:
        return self.root / "phases"

    @property
    def features_dir(self) -> Path:
        return self.root / "features"

    @property
    def fake_data_dir(self) -> Path:
        """The tiny fakes a suite of fake data runs on, written once into its store."""
        return self.root / "fake-data"

    @property
    def matrix_path(self) -> Path:
        return self.root / MATRIX_FILE

    @property
    def marker_path(self) -> Path:
        return self.root / STORE_FILE

    def launcher_dir(self, name: str) -> Path:
        """A launcher's own files (submitit's logs and pickles under slurm/)."""
        return inside(self.root, self.root / name)

    def job_dir(self, job_id: str) -> Path:
        return inside(self.root, self.jobs_dir / job_id)

    def phase_dir(self, key: str) -> Path:
        return inside(self.root, self.phases_dir / key)

    def features_path(self, benchmark: str, set_name: str, key: str) -> Path:
        return inside(self.root, self.features_dir / f"{benchmark}-{set_name}-{key}.npz")

    def feature_result_path(self, benchmark: str, set_name: str, key: str) -> Path:
        return inside(self.root, self.features_dir / f"{benchmark}-{set_name}-{key}.json")

    def record_path(self, job_id: str) -> Path:
        return self.job_dir(job_id) / RECORD

    def worker_log(self, job_id: str) -> Path:
        return self.job_dir(job_id) / "worker.log"

    def job_note(self, job_id: str, name: str) -> Path:
        """A note a launcher keeps beside the job's record (slurm's submission), by its file name."""
        return inside(self.root, self.job_dir(job_id) / name)

    @staticmethod
    def checkpoint_dir(work_dir: Path, key: str) -> Path:
        return work_dir / "checkpoints" / key

    @classmethod
    def phase_files(cls, work_dir: Path, key: str) -> "PhaseFiles":
        from lpft_bench.strategies.kinds import PhaseFiles

        checkpoints = cls.checkpoint_dir(work_dir, key)
        return PhaseFiles(checkpoint=checkpoints / "last.ckpt", selected_dir=checkpoints,
                          progress=cls.progress_path(work_dir))

    @classmethod
    def remove_checkpoints(cls, work_dir: Path, key: str) -> None:
        shutil.rmtree(cls.checkpoint_dir(work_dir, key), ignore_errors=True)

    @staticmethod
    def log_dir(work_dir: Path, key: str) -> Path:
        return work_dir / LOGS / key

    @staticmethod
    def progress_path(work_dir: Path) -> Path:
        return work_dir / "progress.json"

    @staticmethod
    def ingredient_dir(work_dir: Path, job_id: str) -> Path:
        return work_dir / "ingredients" / job_id

    @staticmethod
    def pinned_dir(work_dir: Path, seed: int) -> Path:
        return work_dir / "pinned" / f"seed-{seed}"

    def exists(self) -> bool:
        return self.jobs_dir.is_dir() or self.matrix_path.is_file()

    def job_ids(self) -> list[str]:
        """The ids of every job directory (records or not)."""
        return sorted(p.name for p in self.jobs_dir.glob("*") if p.is_dir())

    def job_dirs(self) -> list[Path]:
        return [self.jobs_dir / job_id for job_id in self.job_ids()]

    # Records.
    def has_record(self, job_id: str) -> bool:
        return self.record_path(job_id).exists()

    def load_record(self, job_id: str) -> dict | None:
        """The job's record, None when it has none; CorruptFile when it is unreadable or no record of this job."""
        path = self.record_path(job_id)
        if not path.exists():
            return None
        try:
            record = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, ValueError) as error:
            raise CorruptFile(path, f"unreadable ({error})") from error
        if not isinstance(record, dict) or record.get("job_id") != job_id:
            raise CorruptFile(path, "not the record of this job")
        if record.get("status") not in ("done", "failed"):
            raise CorruptFile(path, f"unknown status {record.get('status')!r}")
        missing = [key for key in DONE_RECORD_KEYS if key not in record] if record["status"] == "done" else []
        if missing:
            raise CorruptFile(path, f"a done record without {', '.join(missing)}")
        return record

    def read_raw_record(self, job_dir: Path) -> dict | None:
        """A record's content whatever id it names (a migration stopped between a rename and a rewrite)."""
        try:
            record = json.loads((job_dir / RECORD).read_text())
        except (OSError, UnicodeDecodeError, ValueError):
            return None  # none, or unreadable: `run` sets an unreadable one aside and reruns the job
        return record if isinstance(record, dict) and isinstance(record.get("job"), dict) else None

    def write_raw_record(self, job_dir: Path, record: dict) -> None:
        write_json(job_dir / RECORD, record)

    def records(self) -> Iterator[dict]:
        """Every readable record; an unreadable one is named on stderr and skipped (that job's problem alone)."""
        for path in sorted(self.jobs_dir.glob(f"*/{RECORD}")):
            try:
                yield self.load_record(path.parent.name)
            except CorruptFile as error:
                print(f"lpft-bench: skipped {error} (`lpft-bench run` moves it aside and reruns the job)", file=sys.stderr)

    def write_record(self, job_id: str, record: dict) -> None:
        """The record, then the `done` marker: a job with the marker has its whole record."""
        job_dir = self.job_dir(job_id)
        write_json(job_dir / RECORD, finite(record))
        if record.get("status") == "done":
            fault_point(f"done {job_id}")
            (job_dir / DONE_MARKER).touch()

    def job_state(self, job_id: str) -> tuple[str, str]:
        """(state, detail): done, corrupt (detail: why), running, failed or pending, reading and changing nothing."""
        job_dir = self.job_dir(job_id)
        try:
            record = self.load_record(job_id)
        except CorruptFile as error:
            return "corrupt", str(error)
        marked = (job_dir / DONE_MARKER).exists()
        if marked and (record or {}).get("status") != "done":
            return "corrupt", f"{job_dir / DONE_MARKER}: a done marker without a done record"
        if record is not None and record["status"] == "done" and marked:
            return "done", ""
        if self.is_locked(job_id):
            return "running", ""
        if record is not None and record["status"] == "failed":
            return "failed", record.get("error", "")
        return "pending", ""

    def is_done(self, job_id: str) -> bool:
        return self.job_state(job_id)[0] == "done"

    def repair_job(self, job_id: str) -> None:
        """Set aside what would block the job (called under its lock): an unreadable record, a stray done marker."""
        try:
            record = self.load_record(job_id)
        except CorruptFile as error:
            set_aside(error.path, f"{error.reason}, the job reruns")
            record = None
        marker = self.job_dir(job_id) / DONE_MARKER
        if marker.exists() and (record or {}).get("status") != "done":
            marker.unlink()  # an empty file: nothing to keep
            print(f"lpft-bench: {marker}: a done marker without a done record, removed; the job reruns", file=sys.stderr)

    # Locks.
    @contextmanager
    def job_lock(self, job_id: str, attempts: int = LOCK_ATTEMPTS) -> Iterator[bool]:
        """An exclusive, non-blocking lock on the job: yields False when another runner holds it."""
        job_dir = self.job_dir(job_id)
        job_dir.mkdir(parents=True, exist_ok=True)
        with open(job_dir / "lock", "w") as handle:
            for attempt in range(attempts):
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if attempt + 1 == attempts:
                        yield False
                        return
                    time.sleep(0.01)  # `is_locked` probes hold it for microseconds: only a runner holds it longer
            try:
                yield True
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def is_locked(self, job_id: str) -> bool:
        """Whether a runner holds the job's lock, probed through a read-only handle: `status` works on a store
        this user cannot write."""
        try:
            handle = open(self.job_dir(job_id) / "lock")
        except FileNotFoundError:
            return False
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
            return False

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """The whole store's lock (a migration re-keys under it)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".store.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # The matrix and the identity marker.
    def read_matrix(self) -> list[str] | None:
        """The job ids of the matrix the store was last run with; None when it never recorded one; ValueError
        (with why) when the file is unreadable."""
        if not self.matrix_path.is_file():
            return None
        try:
            return list(json.loads(self.matrix_path.read_text())["jobs"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ValueError(str(error)) from error

    def write_matrix(self, job_ids: list[str]) -> None:
        write_json(self.matrix_path, {"jobs": list(job_ids)})

    def marked_version(self) -> int | None:
        """The identity version `store.json` names; None without one; ValueError when it is unreadable."""
        if not self.marker_path.is_file():
            return None
        try:
            return int(json.loads(self.marker_path.read_text())["identity"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ValueError(str(error)) from error

    def holds_results(self) -> bool:
        return self.jobs_dir.is_dir() or self.phases_dir.is_dir()

    def mark(self, version: int, replace: bool = False) -> None:
        if replace or not self.marker_path.is_file():
            write_json(self.marker_path, {"identity": version})

    # Phase results.
    def phase_done(self, key: str) -> bool:
        return (self.phase_dir(key) / RECORD).exists()

    def save_phase(self, key: str, state: dict | None, record: dict, selected: dict | None = None,
                   backbone_sha256: str | None = None, rng: dict | None = None) -> None:
        """The weights after a phase (and, where selection picks an earlier epoch, that epoch's) and the
        generators' state, then its record: a phase directory with a record is complete. With `backbone_sha256`
        (the backbone is the job's source backbone, that digest): the head alone."""
        store_files.save_phase(self.phase_dir(key), state, finite(record), selected, backbone_sha256, rng)

    def load_phase(self, key: str) -> store_files.PhaseResult | None:
        return store_files.load_phase(self.phase_dir(key))

    def load_phase_record(self, key: str) -> dict | None:
        return store_files.load_phase_record(self.phase_dir(key))

    def phase_loadable(self, key: str) -> bool:
        """Whether a run would load phase `key` rather than compute it: its record and its end weights (whole, or
        a head over the source backbone) are stored, as `load_phase` reads them."""
        directory = self.phase_dir(key)
        return (directory / RECORD).exists() and any((directory / name).is_file()
                                                    for name in (store_files.MODEL, store_files.HEAD))

    def phase_weight_files(self, key: str) -> list[Path]:
        """The weights files a stored phase holds now."""
        directory = self.phase_dir(key)
        return [directory / name for name in store_files.WEIGHT_FILES if (directory / name).is_file()]

    def stored_phase_keys(self) -> list[str]:
        """Keys of the finished phases (set-aside copies left out)."""
        return sorted(p.name for p in self.phases_dir.glob("*")
                      if ".corrupt-" not in p.name and (p / RECORD).is_file())

    def unreadable_phase_files(self) -> list[str]:
        """`<file>: <why>` for each weights file of a finished phase (one with its record) that would not load."""
        return store_files.unreadable_phase_files(self.phases_dir)

    def sizes(self) -> dict[str, int]:
        """Bytes on disk by kind: phase weights, cached features, resume checkpoints (with the selected weights
        a running phase keeps beside them), records and logs (jobs' and phases'), and other files (tables)."""
        sizes = dict.fromkeys(("weights", "features", "checkpoints", "records and logs", "other"), 0)
        for path in self.root.rglob("*"):
            if not path.is_file() or path.is_symlink():
                continue
            parts = path.relative_to(self.root).parts
            if parts[0] == "phases":
                kind = "weights" if path.name in store_files.WEIGHT_FILES else "records and logs"
            elif parts[0] == "features":
                kind = "features"
            elif parts[0] == "jobs":
                kind = "checkpoints" if "checkpoints" in parts else "records and logs"
            else:
                kind = "other"
            sizes[kind] += path.stat().st_size
        return sizes

    # The feature cache.
    def cached_features(self, path: Path, extract: Callable[[], tuple[np.ndarray, np.ndarray]]
                        ) -> tuple[np.ndarray, np.ndarray]:
        """Features from the cache at `path` (keyed by everything that determines them); on a miss, `extract()`
        computes them (the engine's business: the store never runs a model) and they are written atomically."""
        if path.exists():
            try:
                with np.load(path) as data:
                    return data["features"], data["labels"]
            except Exception as error:  # numpy and zipfile raise several error types for a truncated archive
                set_aside(path, f"feature cache unreadable ({error}), re-extracting")
        features, labels = extract()

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as handle:  # a file object: np.savez would append ".npz" to a path
                np.savez(handle, features=features, labels=labels)

        atomic_write(path, write)
        return features, labels

    def cached_result(self, path: Path, compute: Callable[[], dict | None]) -> dict | None:
        """A result computed from cached features alone (an oracle probe), from the cache at `path` (keyed by
        those features' key and everything else it depends on); on a miss, `compute()`, written atomically."""
        if path.exists():
            try:
                return json.loads(path.read_text())["result"]
            except (OSError, ValueError, KeyError) as error:
                set_aside(path, f"cached result unreadable ({error}), recomputing")
        result = compute()
        write_json(path, {"result": result})
        return result
