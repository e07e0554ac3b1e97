"""One registry type for every named concept a user can pick: benchmarks, strategies, phase kinds, suites,
backbones, weight sources, launchers and loggers. A registry maps names to objects (read it like a dict) and
answers an unknown name with one `UsageError` that lists the known ones; the CLI reads its choices from it."""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from typing import Generic, TypeVar

from lpft_bench.errors import UsageError

T = TypeVar("T")
_REQUIRED = object()


class Registry(MutableMapping[str, T], Generic[T]):
    """`kind`: what the entries are, as an error message names them ("benchmark", "phase kind"); `entries`:
    registered at once, a mapping by its keys, anything else by each entry's own `name`. `register` refuses a
    name twice; item assignment and deletion replace or drop an entry (a test's `monkeypatch.setitem`)."""

    def __init__(self, kind: str, entries: Mapping[str, T] | Iterable[T] = ()):
        self.kind = kind
        self._entries: dict[str, T] = {}
        for name, entry in entries.items() if isinstance(entries, Mapping) else ((None, e) for e in entries):
            self.register(entry, name)

    def register(self, entry: T, name: str | None = None) -> T:
        """Add `entry` under `name` (default: its own `name`); a name registered twice is a bug."""
        name = name if name is not None else entry.name
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = entry
        return entry

    def get(self, name: str, default=_REQUIRED):  # type: ignore[override]
        """The entry; without a default, an unknown name is the user's mistake (one line listing the known)."""
        if name in self._entries:
            return self._entries[name]
        if default is not _REQUIRED:
            return default
        raise UsageError(f"unknown {self.kind} {name!r}; known: {', '.join(self._entries)}")

    def names(self) -> list[str]:
        return list(self._entries)

    def __getitem__(self, name: str) -> T:
        return self._entries[name]

    def __setitem__(self, name: str, entry: T) -> None:
        self._entries[name] = entry

    def __delitem__(self, name: str) -> None:
        del self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)
