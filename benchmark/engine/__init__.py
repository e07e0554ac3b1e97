"""The job engine: identity (what a job is), the store (where its results live), execution (how it runs)."""
