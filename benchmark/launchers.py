"""Launchers, registered by name: how a matrix's jobs get run. Light to import (the command line reads its choices
here); each names the function that runs it, imported when a matrix is launched.

A launcher's function is called as `launch(jobs, ctx, progress, options)` with options `slots`, `slurm`, `wait`."""
from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import Callable

from lpft_bench.registry import Registry


@dataclass(frozen=True)
class Launcher:
    name: str
    function: str  # "module:function"
    description: str

    def load(self) -> Callable:
        module, function = self.function.split(":")
        return getattr(import_module(module), function)


LAUNCHERS: Registry[Launcher] = Registry("launcher", [
    Launcher("inline", "lpft_bench.runner:launch_inline",
             "jobs one after another in this process (a multi-device job gets its own process: DDP re-executes it)"),
    Launcher("local", "lpft_bench.runner:launch_local", "one subprocess per job, one after another"),
    Launcher("pool", "lpft_bench.runner:launch_pool",
             "--slots subprocesses at a time, each with its own share of CUDA_VISIBLE_DEVICES"),
    Launcher("slurm", "lpft_bench.slurm:launch_slurm",
             "one submitit job array, submit-and-exit unless --wait; workers take each job's lock"),
])
