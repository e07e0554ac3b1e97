"""Fetch a `sources.Download`, verify it, and move it into the canonical layout in one rename.

Files are fetched into `<root>/.downloads/<name>` (same file system as the layout, so the final rename is
atomic). An interrupted fetch leaves a prefix there, and the next attempt asks only for the rest (HTTP Range).
Nothing is unpacked before the checksum matches; archives are unpacked into a temporary folder beside it,
checked, and then renamed into place, so `data check` never finds a half-written set.
"""
from __future__ import annotations

import errno
import gzip
import hashlib
import http.client
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from pathlib import Path

from tqdm import tqdm

from lpft_bench.errors import UsageError

from .sources import Checksum, Download

MIRROR_VARIABLE = "LPFT_BENCH_MIRROR"
STAGING = ".downloads"
ATTEMPTS = 4  # one request plus three resumptions within one command, for flaky connections
CHUNK = 1 << 20
TIMEOUT_S = 60


class DownloadError(UsageError):
    """A download that cannot go on (unreachable, refused, corrupt, no space): one line, exit 2."""


def source_url(download: Download, mirror: str | None) -> str:
    """The upstream address, or the mirror's copy: a mirror is one folder of the files under their names."""
    mirror = mirror or os.environ.get(MIRROR_VARIABLE)
    return f"{mirror.rstrip('/')}/{download.name}" if mirror else download.url


def file_digest(path: Path, kind: str) -> str:
    if kind == "git-blob-sha1":  # git's object id of a file: sha1 over a "blob <size>\0" header and the bytes
        digest = hashlib.sha1(b"blob %d\0" % path.stat().st_size)
    else:
        digest = hashlib.new(kind)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def matches(path: Path, checksum: Checksum) -> bool:
    return file_digest(path, checksum.kind).startswith(checksum.value.lower())


def _gb(size: int) -> str:
    return f"{size / 1e9:.1f} GB"


def check_space(directory: Path, needed: int, what: str) -> None:
    free = shutil.disk_usage(directory).free
    if needed > free:
        raise DownloadError(f"{what} needs about {_gb(needed)} free in {directory}, only {_gb(free)} is free; "
                            "nothing was written")


def _space_needed(download: Download, total: int, have: int) -> int:
    # An archive is unpacked beside itself before the rename: count its content at about its own size again.
    return total - have + (total if download.unpack != "file" else 0)


def _manual(url: str, staging: Path) -> str:
    return (f"download {url} yourself into {staging}/ and rerun (it is verified and installed from there), "
            f"or pass --mirror URL (or ${MIRROR_VARIABLE})")


def _total_size(response, have: int) -> int | None:
    """The whole file's size as the server states it (206: Content-Range's total; 200: Content-Length)."""
    content_range = response.headers.get("Content-Range", "")
    if response.status == 206 and "/" in content_range and not content_range.endswith("*"):
        return int(content_range.rsplit("/", 1)[1])
    length = response.headers.get("Content-Length")
    return have + int(length) if length is not None else None


def fetch(download: Download, url: str, path: Path) -> None:
    """Fetch `url` into `path`, resuming from what `path` already holds, until the server's size is reached."""
    for _ in range(ATTEMPTS):
        have = path.stat().st_size if path.exists() else 0
        if download.size is not None and have == download.size:
            return
        headers = {"User-Agent": "lpft-bench", **({"Range": f"bytes={have}-"} if have else {})}
        try:
            response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=TIMEOUT_S)
        except urllib.error.HTTPError as error:
            if error.code == 416 and have:  # nothing after what we have: the file is whole, its checksum decides
                return
            raise DownloadError(f"{url} answered HTTP {error.code} {error.reason}; {_manual(download.url, path.parent)}") from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            kept = f" ({have:,} bytes kept in {path} for resuming)" if have else ""
            raise DownloadError(f"cannot reach {url}: {reason}{kept}; {_manual(download.url, path.parent)}") from None
        with response:
            if response.status != 206:  # the server ignored the range: start again from the first byte
                have = 0
            total = _total_size(response, have)
            if total is not None and download.size is None:
                check_space(path.parent, _space_needed(download, total, have), download.name)
            try:
                with open(path, "ab" if have else "wb") as f, tqdm(
                        total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024,
                        desc=download.name, file=sys.stderr, disable=None) as bar:
                    while chunk := response.read(CHUNK):
                        f.write(chunk)
                        bar.update(len(chunk))
            except (http.client.IncompleteRead, ConnectionError, TimeoutError):
                pass  # what arrived is a prefix of the file: the next attempt asks for the rest
            except OSError as error:
                if error.errno == errno.ENOSPC:
                    raise DownloadError(f"the disk filled while writing {path} ({path.stat().st_size:,} bytes kept "
                                        "for resuming); free space and rerun") from None
                raise
        if total is None or path.stat().st_size >= total:
            return
    raise DownloadError(f"{url}: the connection broke {ATTEMPTS} times; {path.stat().st_size:,} of {total:,} bytes "
                        f"are kept in {path}: rerun to resume")


def fetch_verified(download: Download, staging: Path, mirror: str | None) -> Path:
    """The file, whole and matching its published checksum, in `staging`."""
    staging.mkdir(parents=True, exist_ok=True)
    path = staging / download.name
    have = path.stat().st_size if path.exists() else 0
    whole = download.size is None or have == download.size
    if have and download.checksum is not None and whole and matches(path, download.checksum):
        return path  # fetched before (or put there by hand): no network needed
    if download.size is not None:
        check_space(staging, _space_needed(download, download.size, have), download.name)
    url = source_url(download, mirror)
    print(f"fetching {url}", file=sys.stderr)
    fetch(download, url, path)
    if download.checksum is not None and not matches(path, download.checksum):
        actual = file_digest(path, download.checksum.kind)
        path.unlink()  # the whole file arrived and is wrong: resuming from it could never fix it
        raise DownloadError(f"{download.name} from {url}: {download.checksum.kind} {actual} is not the published "
                            f"{download.checksum.value} ({download.checksum.source}); removed it, nothing was unpacked")
    return path


def _unpack(archive: Path, kind: str, into: Path) -> None:
    # Not torchvision's extract_archive: it unpacks tars without an extraction filter, and a mirror's archive
    # should never write outside its folder.
    try:
        if kind == "tar":
            with tarfile.open(archive, "r:*") as tar:
                tar.extractall(into, filter="data")
        else:
            with zipfile.ZipFile(archive) as zipped:
                zipped.extractall(into)
    except (tarfile.TarError, zipfile.BadZipFile, gzip.BadGzipFile, zlib.error, EOFError) as error:
        raise DownloadError(f"{archive} is not a readable {kind} archive ({error}); removed it, nothing was "
                            "installed") from None


def install(download: Download, data_root: Path, mirror: str | None) -> str:
    """Fetch, verify and move one file or archive into the layout under `data_root`; say what was done."""
    target = data_root / download.target
    if target.exists():
        return f"{target} is already there, skipped"
    staging = data_root / STAGING
    path = fetch_verified(download, staging, mirror)
    target.parent.mkdir(parents=True, exist_ok=True)
    if download.unpack == "file":
        os.replace(path, target)
        return f"{target}"
    unpacked = Path(tempfile.mkdtemp(prefix=f".{download.name}.", dir=staging))
    try:
        try:
            _unpack(path, download.unpack, unpacked)
            member = unpacked / download.member
            problem = None if member.exists() else f"it holds no {download.member}"
            if problem is None and download.verify is not None:
                problem = download.verify(member, data_root)
        except DownloadError:
            path.unlink()
            raise
        if problem is not None:
            path.unlink()
            raise DownloadError(f"{download.name} from {source_url(download, mirror)} is not the expected archive: "
                                f"{problem}; removed it, nothing was installed")
        os.replace(member, target)
    finally:
        shutil.rmtree(unpacked, ignore_errors=True)
    path.unlink()
    return f"{target}"
