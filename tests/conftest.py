import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory):
    """Every test session gets its own cache (pretrained digits backbone, features): nothing leaks from a user's."""
    path = tmp_path_factory.mktemp("lpft-cache")
    previous = os.environ.get("LPFT_BENCH_CACHE")
    os.environ["LPFT_BENCH_CACHE"] = str(path)
    yield path
    if previous is None:
        os.environ.pop("LPFT_BENCH_CACHE", None)
    else:
        os.environ["LPFT_BENCH_CACHE"] = previous
