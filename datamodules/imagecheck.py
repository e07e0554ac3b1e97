"""Every image of a folder opened and decoded before anything trains, so one report names every bad file at once.

A folder's verdict (the files that cannot be read, and why) is kept in the user's cache directory
(`$LPFT_BENCH_CACHE`, else `$XDG_CACHE_HOME/lpft-bench`, else `~/.cache/lpft-bench`) under `image-checks/`, named
by the folder's content fingerprint and valid only while every file keeps its size and modification time: a
second check of an unchanged folder reads no image. It lives outside any results store because `data check`
runs without one and one dataset serves many stores; it holds no result, only what decoding found, and
deleting it costs one re-check.
"""
from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError
from torchvision.datasets.folder import IMG_EXTENSIONS
from tqdm.auto import tqdm

from lpft_bench.paths import display_path

from .walk import ListedFile, image_files, listing_fingerprint, walk_folder

CACHE_VARIABLE = "LPFT_BENCH_CACHE"


@dataclass(frozen=True)
class FolderVerdict:
    """One folder checked: how many images it holds, and each unreadable one by relative path with the reason."""

    directory: str
    images: int
    bad: dict[str, str]


def cache_directory() -> Path:
    explicit = os.environ.get(CACHE_VARIABLE)
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lpft-bench"


def image_problem(listed: ListedFile) -> str | None:
    """Why the loader could not read this file as an image, or None when it decodes (as the loader does)."""
    if not listed.regular:
        return "not a regular file"
    if listed.size == 0:
        return "empty file (0 bytes)"
    try:
        with Image.open(listed.path) as image:
            image.convert("RGB")  # decodes every pixel, as load_image does
    except UnidentifiedImageError:
        return "not an image (no image format recognised in its bytes)"
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        return f"cannot decode: {error}"
    return None


def _stamp(files: list[ListedFile]) -> str:
    digest = hashlib.sha256()
    for listed in files:
        digest.update(f"{listed.relative}\0{listed.size}\0{listed.mtime_ns}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def _cached(path: Path, stamp: str) -> dict[str, str] | None:
    try:
        entry = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return entry.get("bad") if isinstance(entry, dict) and entry.get("stamp") == stamp else None


def _remember(path: Path, stamp: str, bad: dict[str, str]) -> None:
    from lpft_bench.storage import write_json  # the store's atomic writer: a killed check leaves no half verdict

    try:
        write_json(path, {"stamp": stamp, "bad": bad})
    except OSError:  # an unwritable cache costs a re-check next time, nothing else
        pass


def check_folder(directory: str | os.PathLike, progress: bool = True, workers: int | None = None) -> FolderVerdict:
    """Decode every image of a class-folder tree (in parallel threads: PIL decodes outside the GIL), or reuse
    the verdict of its fingerprint when no file changed since; the folder is listed once, by the same walk its
    identity is."""
    listing = walk_folder(directory)
    files = image_files(listing, IMG_EXTENSIONS)
    stamp = _stamp(files)
    cache = cache_directory() / "image-checks" / f"{listing_fingerprint(listing).replace(':', '-')}.json"
    bad = _cached(cache, stamp)
    if bad is None:
        with ThreadPoolExecutor(max_workers=workers or min(32, os.cpu_count() or 1)) as pool:
            problems = list(tqdm(pool.map(image_problem, files), total=len(files), unit="img", leave=False,
                                 desc=f"checking {display_path(directory)}", disable=not progress or None))
        bad = {listed.relative: problem for listed, problem in zip(files, problems) if problem}
        _remember(cache, stamp, bad)
    return FolderVerdict(os.fspath(directory), len(files), bad)


def format_verdicts(label: str, verdicts: dict[str, FolderVerdict]) -> str | None:
    """Every unreadable file of a benchmark's folders, grouped by set, with counts; None when there is none."""
    total = sum(len(v.bad) for v in verdicts.values())
    if not total:
        return None
    images = sum(v.images for v in verdicts.values())
    lines = [f"{label}: {total} unreadable file(s) of {images} images"]
    for set_name, verdict in verdicts.items():
        if verdict.bad:
            lines.append(f"  {set_name} ({len(verdict.bad)} of {verdict.images}, in {display_path(verdict.directory)}):")
            lines += [f"    {display_path(os.path.join(verdict.directory, *relative.split('/')))}: {reason}"
                      for relative, reason in sorted(verdict.bad.items())]
    return "\n".join(lines)


REMEDY = ("fix or remove them, or set `skip_unreadable: true` in the benchmark's options to leave them out "
          "(they are then listed in each job's record)")
