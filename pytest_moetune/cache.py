"""The persistent tuning cache: a JSON file of tuned entries, safe to share between processes.

The cache is generic: the tuner decides what a key (a string) and an entry (a JSON object) are. The
file records the environment it was tuned in::

    {"schema": 1,
     "metadata": {"gpu_name": ..., "sm": ..., "driver": ..., "torch": ..., "triton": ..., "plugin": ...,
                  "created": "2026-05-09T07:35:25+00:00"},
     "entries": {"<key>": {...}, ...}}

Rules (DESIGN.md section 3, issue 4 item 5):

- A file is validated as a whole before any of it is used. One that is not JSON or does not match the
  schema is *corrupt*: it is moved aside to ``<name>.corrupt-<UTC timestamp>`` with a
  :class:`MoetuneCacheWarning`, and the cache starts empty. A file of a newer schema is refused with a
  ``ValueError`` and left untouched.
- A file tuned in another environment (GPU, SM, driver, torch, triton or plugin version differ) is
  *stale*: it reads as empty (so everything re-tunes), one warning says why, and the next write moves it
  aside to ``<name>.stale-<UTC timestamp>`` before writing a fresh file.
- Writes take a cross-process lock (``<name>.lock``), re-read the file and merge (so concurrent tuners
  lose no entries), and replace the file atomically. A lock that cannot be had, or a file that cannot
  be written, is a :class:`CacheWriteError` naming the file and the cause; the file is left as it was.
- Entries leave the file only when asked (:meth:`TuningCache.remove_many`, ``moetune cache prune``),
  under the same lock and atomic replace; :meth:`TuningCache.of_file` opens a file with the
  environment it records, so that works on any machine.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from pytest_moetune.fileio import atomic_write_text
from pytest_moetune.fingerprint import EnvironmentFingerprint

SCHEMA_VERSION = 1
ENV_VAR = "MOETUNE_CACHE"
DEFAULT_LOCK_TIMEOUT_S = 60.0
_TOP_LEVEL_KEYS = ("entries", "metadata", "schema")
_UTC = timezone.utc  # noqa: UP017 (datetime.UTC is Python >= 3.11; we support 3.10)


class CacheWriteError(OSError):
    """The tuning cache could not be updated: its lock could not be taken, or the file could not be
    written or replaced. The message names the file and the cause; the file is as it was."""


class CacheLockTimeout(CacheWriteError, TimeoutError):
    """The cache's lock was not had within ``lock_timeout`` seconds (also a :class:`TimeoutError`)."""


class MoetuneCacheWarning(UserWarning):
    """A tuning cache file was ignored (stale) or moved aside (corrupt), or one of its entries was
    malformed and is treated as missing (the tuner's warning)."""


def default_cache_path() -> Path:
    """Where the tuning cache lives unless told otherwise.

    ``$MOETUNE_CACHE`` if set, else ``$XDG_CACHE_HOME/pytest-moetune/tuning.json``, else
    ``~/.cache/pytest-moetune/tuning.json``.
    """
    explicit = os.environ.get(ENV_VAR)
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    # The XDG spec says relative paths in its variables are invalid and must be ignored.
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "pytest-moetune" / "tuning.json"


class TuningCache:
    """A persistent ``{key: entry}`` store bound to one file and one environment fingerprint.

    Reading is lazy: the file is loaded on the first :meth:`get` (or ``in``, ``len``, :meth:`keys`,
    :attr:`stale_reason`), or explicitly by :meth:`load`. Writing (:meth:`put`, :meth:`put_many`)
    merges into whatever the file holds at that moment and updates this instance's view.

    Args:
        path: the cache file; its parent directories are created on the first write.
        fingerprint: the current environment, usually :meth:`EnvironmentFingerprint.current`.
        lock_timeout: seconds to wait for the cross-process write lock before giving up.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        fingerprint: EnvironmentFingerprint,
        *,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT_S,
    ) -> None:
        self._path = Path(path)
        self._fingerprint = fingerprint
        self._lock_path = self._path.with_name(self._path.name + ".lock")
        self._lock = FileLock(self._lock_path, timeout=lock_timeout, poll_interval=0.01)
        self._lock_timeout = lock_timeout
        self._entries: dict[str, dict[str, Any]] = {}
        self._stale_reason: str | None = None
        self._loaded = False

    def __repr__(self) -> str:
        return f"TuningCache({str(self._path)!r}, gpu={self._fingerprint.gpu_name!r})"

    @property
    def path(self) -> Path:
        """The cache file."""
        return self._path

    @property
    def fingerprint(self) -> EnvironmentFingerprint:
        """The environment this cache reads and writes entries for."""
        return self._fingerprint

    @property
    def stale_reason(self) -> str | None:
        """Why the file found by the last load was ignored (``"; "``-joined mismatches), else ``None``.

        Set when the file was tuned in another environment; ``None`` when it matched, was missing, or
        was corrupt (the corrupt file's warning says why). Writing does not reset it.
        """
        self._ensure_loaded()
        return self._stale_reason

    def load(self) -> None:
        """(Re-)read the file, replacing this instance's view of it.

        Missing file: empty. Corrupt file: moved aside with a warning, empty. Stale file: empty, with a
        warning and :attr:`stale_reason`.

        Raises:
            ValueError: the file has a newer schema than this version supports (the file is untouched).
        """
        try:
            document = _read_document(self._path)
        except _CorruptCacheError:
            # Confirm under the lock before moving the file: a writer may have just replaced it.
            with self._locked():
                document = self._read_locked()
        self._loaded = True
        self._entries = {}
        self._stale_reason = None
        if document is None:
            return
        mismatches = document.fingerprint.mismatches(self._fingerprint)
        if not mismatches:
            self._entries = document.entries
            return
        self._stale_reason = "; ".join(mismatches)
        warnings.warn(
            MoetuneCacheWarning(
                f"tuning cache {self._path} was tuned in another environment ({self._stale_reason}): "
                f"ignoring its {len(document.entries)} entries and re-tuning; the next write moves it "
                f"aside to {self._path.name}.stale-<timestamp>"
            ),
            stacklevel=3,
        )

    def get(self, key: str) -> dict[str, Any] | None:
        """A copy of the entry stored under ``key``, or ``None``."""
        self._ensure_loaded()
        entry = self._entries.get(key)
        return None if entry is None else copy.deepcopy(entry)

    def __contains__(self, key: object) -> bool:
        self._ensure_loaded()
        return key in self._entries

    def __len__(self) -> int:
        self._ensure_loaded()
        return len(self._entries)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def keys(self) -> list[str]:
        """The stored keys, sorted."""
        self._ensure_loaded()
        return sorted(self._entries)

    def put(self, key: str, entry: Mapping[str, Any]) -> None:
        """Store one entry; see :meth:`put_many`."""
        self.put_many({key: entry})

    def put_many(self, entries: Mapping[str, Mapping[str, Any]]) -> None:
        """Store entries in the file, merged with what other processes wrote since (ours win).

        Every entry is checked before the file is touched. The write holds ``<path>.lock``, re-reads
        the file, moves a stale or corrupt one aside, and replaces the file atomically, so a reader
        sees the old file or the new one, never a mix.

        Raises:
            ValueError: a key is not a string, or an entry is not a JSON object that survives a JSON
                round trip unchanged (names the key; nothing is written).
            CacheWriteError: the lock could not be had (:class:`CacheLockTimeout` after
                ``lock_timeout`` seconds), or the file could not be written (nothing is written).
        """
        checked = {key: _checked_entry(key, entry) for key, entry in entries.items()}
        if not checked:
            return
        self._ensure_loaded()  # a stale or corrupt file warns before it is replaced
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise CacheWriteError(f"could not write the tuning cache {self._path}: {_cause(err)}") from err
        with self._locked():
            document = self._read_locked()
            if document is not None and document.fingerprint != self._fingerprint:
                _move_aside(self._path, "stale")
                document = None
            merged = {**document.entries, **checked} if document else checked
            created = document.created if document else datetime.now(_UTC).isoformat("T", "seconds")
            self._write_locked(merged, created)
        self._entries = merged

    @classmethod
    def of_file(
        cls, path: str | os.PathLike[str], *, lock_timeout: float = DEFAULT_LOCK_TIMEOUT_S
    ) -> TuningCache:
        """The cache of an existing file, bound to the environment the file records (so it can be read
        and pruned on any machine, without reading as stale).

        Raises:
            ValueError: no such file, or it is not a valid cache (the message says why; the file is
                left as it is).
        """
        try:
            document = _read_document(Path(path))
        except _CorruptCacheError as err:
            raise ValueError(f"tuning cache {path} is not valid: {err}") from None
        if document is None:
            raise ValueError(f"no tuning cache at {path}")
        return cls(path, document.fingerprint, lock_timeout=lock_timeout)

    @property
    def created(self) -> str | None:
        """When the file was first written (UTC, ISO 8601), ``None`` if there is no valid file."""
        try:
            document = _read_document(self._path)
        except _CorruptCacheError:
            return None
        return document.created if document else None

    def remove_many(self, keys: Iterable[str]) -> list[str]:
        """Delete ``keys`` from the file (those it holds; the others are ignored) and return the ones
        deleted, sorted. Same lock, re-read and atomic replace as :meth:`put_many`, so entries other
        processes wrote meanwhile stay.

        Raises:
            ValueError: the file was tuned in another environment than this instance's (nothing is
                written; open it with :meth:`of_file`).
            CacheWriteError: the lock could not be had (:class:`CacheLockTimeout` after
                ``lock_timeout`` seconds), or the file could not be written (nothing is removed).
        """
        wanted = set(keys)
        with self._locked():
            document = self._read_locked()
            if document is None:
                self._entries, self._loaded = {}, True
                return []
            if document.fingerprint != self._fingerprint:
                raise ValueError(
                    f"tuning cache {self._path} was tuned in another environment "
                    f"({'; '.join(document.fingerprint.mismatches(self._fingerprint))}): nothing removed"
                )
            removed = sorted(wanted & document.entries.keys())
            kept = {key: entry for key, entry in document.entries.items() if key not in wanted}
            if removed:
                self._write_locked(kept, document.created)
        self._entries, self._loaded, self._stale_reason = kept, True, None
        return removed

    def _write_locked(self, entries: dict[str, dict[str, Any]], created: str) -> None:
        """Replace the file atomically with ``entries`` under this environment (the lock is held)."""
        body = {
            "schema": SCHEMA_VERSION,
            "metadata": {**self._fingerprint.to_dict(), "created": created},
            "entries": entries,
        }
        atomic_write_text(self._path, json.dumps(body, indent=1, sort_keys=True, allow_nan=False) + "\n")

    def _ensure_loaded(self) -> None:
        if not self._loaded:
            self.load()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the cache's lock; an ``OSError`` taking it or inside (writing, moving the file aside)
        becomes a :class:`CacheWriteError` naming the file and the cause."""
        try:
            self._lock.acquire()
        except Timeout as err:
            raise CacheLockTimeout(
                f"could not lock {self._lock_path} within {self._lock_timeout:g} s to update the tuning "
                f"cache {self._path}: {self._lock_blocker()}"
            ) from err
        except OSError as err:
            raise CacheWriteError(
                f"could not lock {self._lock_path} to update the tuning cache {self._path}: {_cause(err)}"
            ) from err
        try:
            yield
        except CacheWriteError:
            raise
        except OSError as err:
            raise CacheWriteError(f"could not write the tuning cache {self._path}: {_cause(err)}") from err
        finally:
            self._lock.release()

    def _lock_blocker(self) -> str:
        """Why the lock was not had in time: the lock file (or, before it exists, its folder) is not
        writable by this process, else another process holds it."""
        target = self._lock_path if self._lock_path.exists() else self._lock_path.parent
        if not os.access(target, os.W_OK):
            return f"{target} is not writable by this user"
        return "another process holds it"

    def _read_locked(self) -> _Document | None:
        """Read the file while holding the lock; a corrupt file is moved aside (with a warning)."""
        try:
            return _read_document(self._path)
        except _CorruptCacheError as err:
            aside = _move_aside(self._path, "corrupt")
            warnings.warn(
                MoetuneCacheWarning(
                    f"tuning cache {self._path} is corrupt ({err}): moved it aside to {aside}; "
                    f"starting with an empty cache"
                ),
                stacklevel=4,
            )
            return None


@dataclass(frozen=True)
class _Document:
    """A cache file that passed validation."""

    fingerprint: EnvironmentFingerprint
    created: str
    entries: dict[str, dict[str, Any]]


class _CorruptCacheError(Exception):
    """The file is not JSON or does not match the schema; the message says how."""


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def _read_document(path: Path) -> _Document | None:
    """Read and validate the whole file; ``None`` if it does not exist.

    Raises:
        _CorruptCacheError: the file is not JSON or does not match the schema.
        ValueError: the file has a newer schema.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except (IsADirectoryError, NotADirectoryError, PermissionError) as err:
        raise ValueError(f"tuning cache {path} cannot be read: {err.strerror}") from None
    try:
        document = json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
    except ValueError as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise _CorruptCacheError(f"not valid JSON: {err}") from None
    if not isinstance(document, dict):
        raise _CorruptCacheError(f"the top level is a JSON {type(document).__name__}, not an object")
    schema = document.get("schema")
    if type(schema) is int and schema > SCHEMA_VERSION:
        raise ValueError(
            f"tuning cache {path} has schema version {schema}, but this pytest-moetune reads schema "
            f"{SCHEMA_VERSION}: upgrade pytest-moetune or point MOETUNE_CACHE/--moetune-cache elsewhere"
        )
    if sorted(document) != list(_TOP_LEVEL_KEYS):
        raise _CorruptCacheError(f"top-level keys are {sorted(document)}, expected {list(_TOP_LEVEL_KEYS)}")
    if type(schema) is not int:
        raise _CorruptCacheError(f"schema is {schema!r}, expected an int")
    if schema != SCHEMA_VERSION:
        raise _CorruptCacheError(f"unknown schema version {schema} (this version writes {SCHEMA_VERSION})")
    metadata = document["metadata"]
    if not isinstance(metadata, dict):
        raise _CorruptCacheError(f"metadata is a JSON {type(metadata).__name__}, not an object")
    if not isinstance(metadata.get("created"), str):
        raise _CorruptCacheError(f"metadata.created is {metadata.get('created')!r}, expected a string")
    names = EnvironmentFingerprint.field_names()
    try:
        fingerprint = EnvironmentFingerprint.from_dict({k: v for k, v in metadata.items() if k in names})
    except ValueError as err:
        raise _CorruptCacheError(f"metadata: {err}") from None
    entries = document["entries"]
    if not isinstance(entries, dict):
        raise _CorruptCacheError(f"entries is a JSON {type(entries).__name__}, not an object")
    for key, entry in entries.items():
        if not isinstance(entry, dict):
            raise _CorruptCacheError(f"entry {key!r} is a JSON {type(entry).__name__}, not an object")
    return _Document(fingerprint, metadata["created"], entries)


def _checked_entry(key: object, entry: object) -> dict[str, Any]:
    """The entry as it will read back from the file, or a ``ValueError`` naming the key."""
    if not isinstance(key, str):
        raise ValueError(f"tuning cache keys must be strings, got {type(key).__name__} {key!r}")
    if not isinstance(entry, Mapping):
        raise ValueError(f"tuning cache entry for key {key!r} must be a dict, got {type(entry).__name__}")
    try:
        round_tripped = json.loads(json.dumps(entry, allow_nan=False))
    except (TypeError, ValueError) as err:
        raise ValueError(f"tuning cache entry for key {key!r} is not JSON-serializable: {err}") from None
    if round_tripped != entry:
        raise ValueError(
            f"tuning cache entry for key {key!r} would not read back equal from JSON (tuples become "
            f"lists, non-string dict keys become strings): {entry!r}"
        )
    return round_tripped


def _cause(err: OSError) -> str:
    """An ``OSError`` in words: its ``strerror`` and the path it names (``str(err)`` without one)."""
    if not err.strerror:
        return str(err) or type(err).__name__
    return f"{err.strerror} ({err.filename})" if err.filename else err.strerror


def _utc_stamp() -> str:
    return datetime.now(_UTC).strftime("%Y%m%dT%H%M%S.%fZ")


def _move_aside(path: Path, tag: str) -> Path:
    """Rename ``path`` to ``<name>.<tag>-<UTC timestamp>`` next to it (never overwriting) and return that."""
    aside = path.with_name(f"{path.name}.{tag}-{_utc_stamp()}")
    suffix = 0
    while aside.exists():
        suffix += 1
        aside = path.with_name(f"{path.name}.{tag}-{_utc_stamp()}-{suffix}")
    os.replace(path, aside)
    return aside
