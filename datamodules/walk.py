"""Listing an image folder without looping or exploding: the one walk that both a folder's identity and its loader read.

A symbolic link to a directory is followed only when it stays inside the folder being listed, and each real
directory (by device and inode) is entered once: `ln -s .. train/cat/loop`, a link to `/`, or two links to the
same images are each one line naming the link, before anything is read. Links to single files are followed
wherever they point (a split made of links into a pool of images is common, and a file cannot recurse).
Hidden files and folders (a leading dot) are never part of a dataset.
"""
from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from contextlib import contextmanager
from typing import Iterable, Iterator, Mapping

from .base import DataError, DatasetMissing


class FolderLoop(DataError):
    """A directory link that loops, leaves the folder, or reaches a directory already listed."""


@dataclass(frozen=True)
class ListedFile:
    """One file of a folder: its path relative to the folder (POSIX separators), its size, its path on disk."""

    relative: str
    size: int
    path: str
    regular: bool = True
    mtime_ns: int = 0


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


# Inside `one_listing_per_folder`: each folder's full listing by its real path, so a run walks it once.
_listings: dict[str, list[ListedFile]] | None = None


@contextmanager
def one_listing_per_folder() -> Iterator[None]:
    """Within this block a folder is walked once: the jobs' identities, the image check and the loaders of jobs
    run in this process all read the listing made first, before any job (a job in another process walks again)."""
    global _listings
    outer = _listings
    _listings = {} if outer is None else outer
    try:
        yield
    finally:
        _listings = outer


def walk_folder(directory: str | os.PathLike, subfolders: Iterable[str] | None = None,
                sizes: bool = True) -> list[ListedFile]:
    """Every non-hidden file under `directory` (or only under its `subfolders`), in os.walk's top-down order:
    a folder's files sorted by name, then its subfolders sorted by name. FolderLoop for a directory link that
    leaves `directory` or reaches a directory already entered; DataError for a dangling link."""
    if _listings is None:
        return _walk(directory, subfolders, sizes)
    real = os.path.realpath(directory)
    if real not in _listings:
        if subfolders is not None or not sizes:  # a loader's partial walk (ImageNet's classes) is not kept
            return _walk(directory, subfolders, sizes)
        _listings[real] = _walk(directory, None, True)
    listing = _listings[real]
    if subfolders is None:
        return listing
    wanted = set(subfolders)
    return [f for f in listing if "/" in f.relative and f.relative.split("/", 1)[0] in wanted]


def _walk(directory: str | os.PathLike, subfolders: Iterable[str] | None, sizes: bool) -> list[ListedFile]:
    top = os.fspath(directory)
    if not os.path.isdir(top):
        raise DatasetMissing(top, "no such directory")
    real_top = os.path.realpath(top)
    entered: dict[tuple[int, int], str] = {}
    listed: list[ListedFile] = []

    def enter(path: str, relative: str) -> None:
        info = os.stat(path)
        key = (info.st_dev, info.st_ino)
        if key in entered:
            first = os.path.join(top, *entered[key].split("/")) if entered[key] else top
            raise FolderLoop(f"{path}: the same folder as {first}, already listed (a symbolic link loop, or two paths "
                             "to the same images); remove the link")
        entered[key] = relative

    enter(top, "")
    # An explicit stack, not recursion: depth is bounded by the real tree since no directory is entered twice.
    roots = [("", top)] if subfolders is None else [(name, os.path.join(top, name)) for name in sorted(subfolders)]
    stack = list(reversed(roots))
    while stack:
        relative, path = stack.pop()
        if relative:
            _check_link(path, real_top, top)
            if not os.path.isdir(path):
                continue
            enter(path, relative)
        try:
            with os.scandir(path) as entries:
                children = sorted((entry for entry in entries if not entry.name.startswith(".")), key=lambda e: e.name)
        except OSError as error:
            raise DataError(f"{path}: cannot list this folder ({error.strerror}); make it readable") from error
        folders = []
        for entry in children:
            child = f"{relative}/{entry.name}" if relative else entry.name
            if entry.is_dir():  # follows links: a directory link is checked when it is entered
                folders.append((child, entry.path))
            elif entry.is_symlink() and not os.path.exists(entry.path):
                raise DataError(f"{entry.path}: a dangling symbolic link (to {os.readlink(entry.path)}); "
                                "remove it or restore its target")
            else:
                info = entry.stat() if sizes else None
                listed.append(ListedFile(child, info.st_size, entry.path, stat.S_ISREG(info.st_mode), info.st_mtime_ns)
                              if info else ListedFile(child, -1, entry.path))
        stack.extend(reversed(folders))
    return listed


def _check_link(path: str, real_top: str, top: str) -> None:
    if os.path.islink(path):
        target = os.path.realpath(path)
        if not _inside(target, real_top):
            raise FolderLoop(f"{path}: a symbolic link to {target}, outside the dataset folder {top}; "
                             "a folder link must stay inside it (link the files, or move the folder in)")


def image_samples(directory: str | os.PathLike, class_to_idx: Mapping[str, int],
                  extensions: tuple[str, ...], exclude: frozenset[str] = frozenset()) -> list[tuple[str, int]]:
    """torchvision's `make_dataset` over `walk_folder`: the same samples in the same order (class, folder path,
    file name) for every tree without hidden files, and none of its endless loops. `exclude` holds relative
    paths to leave out (the unreadable files a `skip_unreadable` benchmark drops)."""
    top = os.fspath(directory)
    classes = [name for name in sorted(class_to_idx) if os.path.isdir(os.path.join(top, name))]
    by_folder: dict[str, list[tuple[str, str]]] = {}
    for listed in walk_folder(top, classes, sizes=False):
        folder, _, name = listed.relative.rpartition("/")
        by_folder.setdefault(folder, []).append((name, listed.relative))
    samples, present = [], set()
    for target_class in classes:
        folders = sorted((os.path.join(top, *folder.split("/")), folder) for folder in by_folder
                         if folder == target_class or folder.startswith(target_class + "/"))
        for folder_path, folder in folders:
            for name, relative in sorted(by_folder[folder]):
                if name.lower().endswith(extensions) and relative not in exclude:
                    samples.append((os.path.join(folder_path, name), class_to_idx[target_class]))
                    present.add(target_class)
    empty = sorted(set(class_to_idx) - present)
    if empty:  # torchvision's own report, which the loaders turn into DatasetMissing
        raise FileNotFoundError(f"Found no valid file for the classes {', '.join(empty)}. "
                                f"Supported extensions are: {', '.join(extensions)}")
    return samples


def listing_fingerprint(listing: list[ListedFile]) -> str:
    """A folder's content as its relative file paths and sizes, in walk order: moving the folder keeps it;
    adding, removing, renaming or resizing a file changes it."""
    digest = hashlib.sha256()
    for listed in listing:
        # surrogateescape: a file name that is not valid UTF-8 hashes as its bytes on disk (UTF-8 names as before).
        digest.update(f"{listed.relative}\0{listed.size}\n".encode("utf-8", "surrogateescape"))
    return "files-sha256:" + digest.hexdigest()[:16]


def image_files(listing: list[ListedFile], extensions: tuple[str, ...]) -> list[ListedFile]:
    """The files of a class-folder listing the loader reads as images (by extension, as ImageFolder)."""
    return [f for f in listing if "/" in f.relative and f.relative.lower().endswith(extensions)]
