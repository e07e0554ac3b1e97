"""Any path a user's file system allows, read and shown: Linux names are bytes, not necessarily UTF-8.

Python keeps such a name as a str with lone surrogates (os.fsdecode), which opens, lists and renames the file
exactly; what breaks is printing it (UnicodeEncodeError on a UTF-8 stream) and libraries that want UTF-8
(safetensors' reader). These three helpers are where that is handled.
"""
from __future__ import annotations

import os

from safetensors.torch import load, load_file


def printable(text: str) -> str:
    """Text holding file names as any terminal and UTF-8 file can take it: a byte of a name that is not valid
    UTF-8 is written `\\xNN`, as bash's $'...' reads it back."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def display_path(path: str | os.PathLike) -> str:
    return printable(os.fsdecode(path))


def load_safetensors(path: str | os.PathLike) -> dict:
    """A safetensors file's tensors; its reader takes UTF-8 paths only, so any other path is read as bytes."""
    text = os.fsdecode(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        with open(text, "rb") as handle:
            return load(handle.read())
    return load_file(text)
