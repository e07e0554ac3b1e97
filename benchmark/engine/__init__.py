"""The job engine: identity (what a job is), the store (where its results live), execution (how it runs)."""
from .execution import PreparedJob, Trainers, phase_context, prepare_job, quiet_lightning, record_failure, run_job, run_phases
from .identity import Job, RunContext, feature_key, ingredient_jobs, phase_key
from .store import Store

__all__ = ["Job", "PreparedJob", "RunContext", "Store", "feature_key", "ingredient_jobs", "phase_context",
           "phase_key", "prepare_job", "Trainers", "quiet_lightning", "record_failure", "run_job", "run_phases"]
