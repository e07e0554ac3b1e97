"""The count model of backbone forward passes (how many images a matrix of jobs sends through the backbone, from
the phase kinds' own `forward_passes` and the benchmarks' set sizes) and the bench's items 4 and 5 it measures."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterable

from lpft_bench.analysis.bench_setup import BENCHMARK, SEED, Row
from lpft_bench.datamodules import BENCHMARKS, ID_TEST, ID_VAL, ShiftDataModule, benchmark_meaning
from lpft_bench.datamodules.imagedata import ImageShiftDataModule
from lpft_bench.engine import Job, phase_key
from lpft_bench.meaning import canonical_json
from lpft_bench.strategies import Phase, get_strategy
from lpft_bench.strategies.kinds import phase_kind
from lpft_bench.suites import SUITES


@dataclass(frozen=True)
class SetSizes:
    """Images in a benchmark's training set and in each evaluation set, and the set that selects."""

    train: int
    eval_sets: dict[str, int]
    splits: dict[str, str]
    selection: str

    @classmethod
    def of(cls, datamodule: ShiftDataModule) -> "SetSizes":
        return cls(len(datamodule.splits.train), {s.name: len(s.dataset) for s in datamodule.eval_sets},
                   {s.name: s.split for s in datamodule.eval_sets}, datamodule.selection_set)

    def runs_per_ood_set(self) -> dict[str, "SetSizes"]:
        """One run per OOD set, each evaluating the ID sets and that OOD set."""
        ood = [name for name, split in self.splits.items() if split == "ood"]
        if not ood:
            return {"": self}
        return {name: replace(self, eval_sets={n: size for n, size in self.eval_sets.items()
                                               if self.splits[n] == "id" or n == name}) for name in ood}


def countable(job: Job) -> bool:
    """Whether the phase kinds count every phase of the job (weight-space phases they do not)."""
    return all(phase_kind(p.trains).forward_passes(p, {"train": 1}, 1, set()) is not None
               for p in get_strategy(job.strategy).phases(job.hparams))


def paper_probe_forward_passes(phase: Phase, sizes: SetSizes) -> int:
    """The paper's LP re-extracts training and selection features at every C, and the other sets once."""
    others = sum(n for name, n in sizes.eval_sets.items() if name != sizes.selection)
    return len(phase.probe_Cs) * (sizes.train + sizes.eval_sets[sizes.selection]) + others


def matrix_forward_passes(jobs: Iterable[Job], sizes_of: dict[str, SetSizes], reuse: bool, paper_probe: bool,
                          one_pass: bool) -> int:
    """Backbone forward passes of a matrix of jobs run in order.

    reuse: what the suite shares between jobs: a phase whose prefix another job already ran is loaded, not
    rerun (`jobs.phase_key`: lp-ft takes the lp job's probe), and features are extracted once per backbone,
    benchmark, seed and set. paper_probe: a logistic probe re-extracts its features at every C.
    one_pass: every set is evaluated in the job's one run, else there is one run per OOD set (each a
    benchmark of its own, sharing nothing with the others)."""
    ran: set[str] = set()
    cached: dict[str, set[str]] = {}
    total = 0
    for job in jobs:
        strategy = get_strategy(job.strategy)
        phases = strategy.phases(job.hparams)
        probe_size = strategy.hparams(job.hparams).get("probe_size", 512)
        sizes = sizes_of[job.benchmark]
        features = canonical_json([job.backbone, job.checkpoint, job.benchmark,
                                   benchmark_meaning(job.benchmark, job.benchmark_options), job.seed])
        for run_name, run in ({"": sizes} if one_pass else sizes.runs_per_ood_set()).items():
            for index, phase in enumerate(phases):
                key = f"{run_name}/{phase_key(job, phases, index)}"
                if reuse and key in ran:
                    continue
                ran.add(key)
                kind = phase_kind(phase.trains)
                if paper_probe and kind.name == "logistic-probe":
                    total += paper_probe_forward_passes(phase, run)
                else:
                    extracted = cached.setdefault(f"{run_name}/{features}", set()) if reuse else set()
                    total += kind.forward_passes(phase, {"train": run.train, **run.eval_sets}, probe_size, extracted)
    return total


def has_reference_counts(benchmark: str) -> bool:
    return issubclass(BENCHMARKS[benchmark], ImageShiftDataModule) and BENCHMARKS[benchmark].canonical


def expected_sizes(benchmark: str, options: dict) -> SetSizes | None:
    """Set sizes without the data: the reference counts of a canonical image benchmark (None where one is
    not given), the built sets of any other (digits is built in a second)."""
    datamodule = BENCHMARKS[benchmark](**options)
    if not has_reference_counts(benchmark):
        datamodule.setup("fit")
        return SetSizes.of(datamodule)
    specs = [s for s in datamodule.sets if s.split != "ood" or s.name in datamodule.ood_sets]
    if any(s.expected is None for s in specs):
        return None
    train = next(s.expected for s in specs if s.split == "train")
    eval_sets = {s.name: s.expected for s in specs if s.split != "train"}
    splits = {s.name: s.split for s in specs if s.split != "train"}
    if datamodule.mode == "clean":  # as ImageShiftDataModule.build_splits holds id_val out of training
        held_out = max(1, round(train * datamodule.val_fraction))
        train -= held_out
        eval_sets, splits = {ID_VAL: held_out, **eval_sets}, {ID_VAL: "id", **splits}
    if datamodule.subset is not None:
        train = min(train, datamodule.subset)
        eval_sets = {name: min(n, datamodule.subset) for name, n in eval_sets.items()}
    return SetSizes(train, eval_sets, splits, ID_VAL if ID_VAL in eval_sets else ID_TEST)


# --- 4. and 5. forward passes ---------------------------------------------------------------------------------


def measure_one_pass_evaluation(check: str) -> Row:
    job = SUITES["quickstart"].expand(benchmarks=[BENCHMARK], strategies=["ft"], seeds=[SEED])[0]
    sizes = {BENCHMARK: expected_sizes(BENCHMARK, job.benchmark_options)}
    ours = matrix_forward_passes([job], sizes, reuse=True, paper_probe=False, one_pass=True)
    reference = matrix_forward_passes([job], sizes, reuse=True, paper_probe=False, one_pass=False)
    (phase,) = get_strategy(job.strategy).phases(job.hparams)
    evaluated = ", ".join(f"{name} {n}" for name, n in sizes[BENCHMARK].eval_sets.items())
    return Row("4", "forward passes, one FT run evaluating every set vs one run per OOD set", ours, reference,
               "backbone passes", reference / ours, "", "",
               f"saves {reference - ours:,} passes ({1 - ours / reference:.0%}); the quickstart suite's {BENCHMARK} ft "
               f"job: {phase.epochs} epochs x {sizes[BENCHMARK].train} training images, each epoch evaluating "
               f"{evaluated}, plus the FT diagnostics; a training image counts once, as an evaluated one; {check}")


def measure_matrix(check: str) -> Row:
    suite = SUITES["paper"] if "paper" in SUITES else SUITES["quickstart"]
    which = f"the {suite.name!r} suite" + ("" if suite.name == "paper" else " (no 'paper' suite is defined)")
    sizes = {name: expected_sizes(name, plan.options) for name, plan in suite.benchmarks.items()}
    unknown = [name for name, known in sizes.items() if known is None]
    counted = [name for name in suite.benchmarks if name not in unknown]
    expanded = suite.expand(benchmarks=counted)
    jobs = [job for job in expanded if countable(job)]
    uncounted = sorted({job.strategy for job in expanded} - {job.strategy for job in jobs})

    def passes(reuse: bool = True, paper_probe: bool = False, one_pass: bool = True) -> int:
        return matrix_forward_passes(jobs, sizes, reuse, paper_probe, one_pass)

    ours, reference = passes(), passes(reuse=False, paper_probe=True, one_pass=False)
    left_out = f" ({', '.join(unknown)} left out: their data sources give no image count)" if unknown else ""
    if uncounted:
        left_out += f" (strategies {', '.join(uncounted)} left out: the count model has no weight-space phases)"
    built = [name for name in counted if not has_reference_counts(name)]
    sources = "the data sources' expected counts" + (f" ({', '.join(built)}: as built)" if built else "")
    return Row("5", "forward passes of a suite's matrix, suite vs naive", ours, reference, "backbone passes",
               reference / ours, "", "",
               f"{which}, {len(jobs)} jobs on {', '.join(counted)}{left_out}, set sizes from {sources}; naive: no "
               f"phase or feature shared between jobs, the paper's LP (features re-extracted at each C), one run per "
               f"OOD set; saves {reference - ours:,} passes; alone, no sharing would cost "
               f"{passes(reuse=False) - ours:+,}, the paper's LP {passes(paper_probe=True) - ours:+,}, one run per "
               f"OOD set {passes(one_pass=False) - ours:+,}; {check}")

