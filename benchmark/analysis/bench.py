"""`lpft-bench bench`: the suite measured against a hand-written loop and the paper's linear probe.

Every number comes from this run, on this machine's CPU, with the default backbone (`digits-resnet`) on the
digits benchmark's data, each side measured the same way and with one thread (on a shared machine, the
threads of one process wait for each other in every parallel region whenever another process holds a core,
which stalls whichever side happens to be running):

1. FT training throughput of a suite job (the gradient phase kind: Lightning driving `AdaptationModule`, with the
   job's callbacks, logger and per-epoch checkpoint) vs a plain PyTorch loop over the same in-memory tensors;
   same model, SGD with momentum 0.9, batch size, fp32. One instrument times both: a step ends when the
   optimiser's step returns. The first epoch is warm-up. 1a is the median step inside an epoch (the loop
   between steps included, epoch ends excluded); 1b is the sustained rate, epoch ends included.
2. An FT epoch fed by the datamodule's DataLoader (as a job is) vs the same batches replayed from memory,
   both driven by the same plain training step: 2a on digits (tensors already), 2b on real images (the digits
   written as JPEG files, read by the `folder` benchmark: ImageFolder, PIL decoding, timm transforms) loaded
   in the training process as a job does by default, 2c the same with two loader workers.
3. The paper's LP (every sweep point re-extracts its features from the images and fits its own logistic
   regression) vs the suite's (the logistic-probe kind on a cold feature cache: features once, then the
   warm-started regularisation path): 3a time for the sweep, 3b ID test accuracy of the chosen head.
4. and 5. Backbone forward passes (images through the backbone), counted from the suite's definitions and
   the benchmarks' set sizes: 4 one FT run evaluating every set vs one run per OOD set; 5 the `paper` suite
   (else `quickstart`) vs the same matrix sharing no phase or feature between jobs, with the paper's LP and
   one run per OOD set. The count model is checked against the passes counted in this run's FT job and LP.
6. (`--end-to-end`) The quickstart suite into a fresh store vs `plain_quickstart.py`, the same table cells by
   hand: CPU seconds of each process (three alternating runs each) and whether every cell agrees
   (bench_end_to_end).
G1 to G3 (`--gpu`): a training step of ResNet-50 and ViT-B/16 at 224 px on one GPU, DDP scaling (bench_gpu);
`--markdown` prints the table as the README shows it, headed by the machine (bench_markdown).
1c is 1a's difference per step: what Lightning and the job's callbacks add to a training step.

Columns: `ratio` is how many times better ours is than the reference (ours/reference for rates and
accuracies, reference/ours for times and counts); `met` says whether the row's target is met ("" where the
row has none). Timings on a shared machine move with its load: repeats alternate the two sides and the
median of each side is reported; where a repeat is one run of each side back to back (1a, 6), `ratio` is the
median of the repeats' own ratios, so that a drift of the machine's speed between repeats cancels, and the notes
give the ratio of the two medians beside it.

Here: the run and its table; in bench_setup what every measurement shares (Scale, Setup, Row); in
bench_instruments the clock, the counter and the thread limits; in bench_timed items 1 to 3; in bench_counts
the forward-pass count model and items 4 and 5.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import pandas as pd
import torch

from lpft_bench.analysis.bench_counts import measure_matrix, measure_one_pass_evaluation
from lpft_bench.analysis.bench_end_to_end import measure_end_to_end
from lpft_bench.analysis.bench_gpu import measure_gpu_rows
from lpft_bench.analysis.bench_markdown import format_markdown
from lpft_bench.analysis.bench_instruments import threads
from lpft_bench.analysis.bench_setup import SCALES, build_setup
from lpft_bench.analysis.bench_timed import measure_data_pipeline, measure_ft_throughput, measure_linear_probe
from lpft_bench.engine import quiet_lightning
from lpft_bench.errors import UsageError
from lpft_bench.storage import atomic_write

DEFAULT_OUT = Path("results/bench/bench.csv")
THREADS = 1
COLUMNS = ["id", "measurement", "ours", "reference", "unit", "ratio", "target", "met", "notes"]


def run_bench(out_csv: Path = DEFAULT_OUT, size: str = "full", end_to_end: bool = False,
              gpu: bool = False) -> pd.DataFrame:
    """Measure everything (module docstring), write the table to `out_csv` and return it; `end_to_end` adds
    row 6 (the whole quickstart, suite vs plain script: minutes), `gpu` rows G1 to G3 (bench_gpu)."""
    if size not in SCALES:
        raise ValueError(f"size must be one of {', '.join(SCALES)}, not {size!r}")
    scale = SCALES[size]
    quiet_lightning()
    with tempfile.TemporaryDirectory(prefix="lpft-bench-") as workdir, threads(THREADS):
        _progress("setup: data and the default backbone" + (" (pretrained once, then cached)" * scale.pretrained))
        setup = build_setup(scale, Path(workdir))
        _progress("1/5 FT throughput: suite job vs plain loop")
        throughput, ft_check = measure_ft_throughput(setup, scale)
        _progress("2/5 data pipeline vs in-memory")
        pipeline = measure_data_pipeline(setup, scale)
        _progress("3/5 linear probe: suite vs paper")
        probe, probe_check = measure_linear_probe(setup, scale)
    _progress("4/5 and 5/5 forward passes")
    check = f"count model checked against this run: {ft_check}; {probe_check}"
    rows = [*throughput, *pipeline, *probe, measure_one_pass_evaluation(check), measure_matrix(check)]
    if end_to_end:
        _progress("6 end to end: the quickstart suite vs the plain script (minutes)")
        rows.append(measure_end_to_end(**({"repeats": 3} if size == "full" else {"epochs": 1, "seeds": [0]})))
    if gpu:
        _progress("G1 to G3 on the GPUs")
        rows += measure_gpu_rows()
    frame = pd.DataFrame([vars(row) for row in rows], columns=COLUMNS)
    atomic_write(out_csv, lambda tmp: frame.to_csv(tmp, index=False))
    return frame


def _progress(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def _number(value: float) -> str:
    if float(value).is_integer() and abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.4g}"


def format_bench(frame: pd.DataFrame) -> str:
    """The table, then each row's notes."""
    frame = frame.fillna("")  # a table read back from CSV has NaN where a row has no target
    header = ("", "measurement", "ours", "reference", "unit", "ratio", "target", "met")
    table = [header] + [(r.id, r.measurement, _number(r.ours), _number(r.reference), r.unit, f"{r.ratio:.3g}",
                         r.target, r.met) for r in frame.itertuples()]
    widths = [max(len(str(line[i])) for line in table) for i in range(len(header))]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(line, widths)).rstrip() for line in table]
    lines.append("\nratio: how many times better ours is (ours/reference for rates and accuracy, reference/ours "
                 "for times and counts)")
    lines += [f"{r.id}: {r.notes}" for r in frame.itertuples()]
    return "\n".join(lines)


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"CSV to write (default: {DEFAULT_OUT})")
    parser.add_argument("--tiny", action="store_true",
                        help="a smoke run of a few seconds: small data, short sweeps, numbers meaningless")
    parser.add_argument("--end-to-end", action="store_true",
                        help="add row 6: the quickstart suite in a fresh store vs plain_quickstart.py, CPU seconds "
                             "(medians of 3 alternating runs each, about 10 minutes) and whether the cells agree "
                             "(with --tiny: once, 1 epoch, 1 seed)")
    parser.add_argument("--gpu", action="store_true",
                        help="add rows G1 to G3 (ResNet-50 and ViT-B/16 step throughput at 224 px, DDP scaling): "
                             "needs a CUDA device")
    parser.add_argument("--markdown", action="store_true",
                        help="print the README's performance table, with the machine it was measured on")


def main_bench(args: argparse.Namespace) -> int:
    if args.gpu and not torch.cuda.is_available():
        raise UsageError("bench --gpu measures on a CUDA device and this machine has none; run it where "
                         "`python -c 'import torch; print(torch.cuda.is_available())'` prints True")
    frame = run_bench(args.out, "tiny" if args.tiny else "full", end_to_end=args.end_to_end, gpu=args.gpu)
    print(format_markdown(frame) if args.markdown else format_bench(frame))
    print(f"\nwritten to {args.out}")
    return 0
