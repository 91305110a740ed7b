"""The persistent tuning cache: a JSON file of tuned entries, safe to share between processes and
between environments.

The cache is generic: the tuner decides what a key (a string) and an entry (a JSON object) are. The
file holds one section per environment the entries were tuned in, so one file can serve machines of
several GPU models or software stacks (a shared home folder, a CI cache served to two kinds of
runner)::

    {"schema": 2,
     "environments": [
      {"metadata": {"gpu_name": ..., "sm": ..., "driver": ..., "torch": ..., "triton": ...,
                    "plugin": ..., "created": "2026-05-09T07:35:25+00:00"},
       "entries": {"<key>": {...}, ...}},
      ...]}

Rules (DESIGN.md section 3, issue 4 item 5):

- A :class:`TuningCache` reads and writes only the section of its environment (GPU, SM, driver, torch,
  triton and plugin version all equal); no two sections have one environment. An environment the file
  has no section for reads as empty (so everything re-tunes), one :class:`MoetuneCacheWarning` says
  how the file's other environments differ from it, and the first write adds its section. Other
  sections are never dropped or altered by a write.
- A file is validated as a whole before any of it is used. One that is not JSON or does not match the
  schema is *corrupt*: it is moved aside to ``<name>.corrupt-<UTC timestamp>`` with a
  :class:`MoetuneCacheWarning`, and the cache starts empty. A file of a newer schema is refused with a
  ``ValueError`` and left untouched. A schema-1 file (``{"schema": 1, "metadata": ..., "entries":
  ...}``, one environment) reads as that one section and is rewritten as schema 2 by the next write.
- Writes take a cross-process lock (``<name>.lock``), re-read the file and merge (so concurrent tuners
  of any environments lose no entries), and replace the file atomically. A lock that cannot be had,
  or a file that cannot be written, is a :class:`CacheWriteError` naming the file and the cause; the
  file is left as it was.
- Entries and sections leave the file only when asked (:meth:`TuningCache.remove_many`,
  :meth:`TuningCache.remove_environments`, ``moetune cache prune``), under the same lock and atomic
  replace. :meth:`TuningCache.of_file` opens a file for all of its environments, so it can be read and
  pruned on any machine.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import warnings
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from pytest_moetune.fileio import atomic_write_text
from pytest_moetune.fingerprint import EnvironmentFingerprint

SCHEMA_VERSION = 2
ENV_VAR = "MOETUNE_CACHE"
DEFAULT_LOCK_TIMEOUT_S = 60.0
_TOP_LEVEL_KEYS = ("environments", "schema")
_SECTION_KEYS = ("entries", "metadata")
_SCHEMA_1_TOP_LEVEL_KEYS = ("entries", "metadata", "schema")
_UTC = timezone.utc  # noqa: UP017 (datetime.UTC is Python >= 3.11; we support 3.10)


class CacheWriteError(OSError):
    """The tuning cache could not be updated: its lock could not be taken, or the file could not be
    written or replaced. The message names the file and the cause; the file is as it was."""


class CacheLockTimeout(CacheWriteError, TimeoutError):
    """The cache's lock was not had within ``lock_timeout`` seconds (also a :class:`TimeoutError`)."""


class MoetuneCacheWarning(UserWarning):
    """A tuning cache file had no entries for this environment (only for others), or was moved aside
    (corrupt), or one of its entries was malformed and is treated as missing (the tuner's warning)."""


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


@dataclass(frozen=True)
class CacheEnvironment:
    """One environment's section of a cache file: what it was tuned in, when the section was first
    written (UTC, ISO 8601), and its ``{key: entry}``."""

    fingerprint: EnvironmentFingerprint
    created: str
    entries: dict[str, dict[str, Any]]


class TuningCache:
    """A persistent ``{key: entry}`` store: one environment's section of a cache file.

    Reading is lazy: the file is loaded on the first :meth:`get` (or ``in``, ``len``, :meth:`keys`,
    :meth:`environments`, :attr:`mismatch_reason`), or explicitly by :meth:`load`. Writing
    (:meth:`put`, :meth:`put_many`) merges into whatever this environment's section holds at that
    moment, keeps the other sections as they are, and updates this instance's view.

    :meth:`of_file` opens a file for all of its environments instead (``fingerprint`` is ``None``):
    it reads and removes entries in every section and cannot :meth:`put`.

    Args:
        path: the cache file; its parent directories are created on the first write.
        fingerprint: the current environment, usually :meth:`EnvironmentFingerprint.current`; ``None``
            for every environment of the file, as :meth:`of_file` opens it.
        lock_timeout: seconds to wait for the cross-process write lock before giving up.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        fingerprint: EnvironmentFingerprint | None,
        *,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT_S,
    ) -> None:
        self._path = Path(path)
        self._fingerprint = fingerprint
        self._lock_path = self._path.with_name(self._path.name + ".lock")
        self._lock = FileLock(self._lock_path, timeout=lock_timeout, poll_interval=0.01)
        self._lock_timeout = lock_timeout
        self._sections: tuple[CacheEnvironment, ...] = ()
        self._mismatch_reason: str | None = None
        self._loaded = False

    def __repr__(self) -> str:
        gpu = "every environment" if self._fingerprint is None else f"gpu={self._fingerprint.gpu_name!r}"
        return f"TuningCache({str(self._path)!r}, {gpu})"

    @property
    def path(self) -> Path:
        """The cache file."""
        return self._path

    @property
    def fingerprint(self) -> EnvironmentFingerprint | None:
        """The environment whose section this cache reads and writes; ``None`` for every section
        (:meth:`of_file`)."""
        return self._fingerprint

    @property
    def mismatch_reason(self) -> str | None:
        """Why this environment's entries were missing from the file found by the last load, else ``None``.

        Set when the file has sections of other environments only: for each of them (in file order,
        ``" | "``-joined) the ``"; "``-joined :meth:`EnvironmentFingerprint.mismatches`, e.g.
        ``"torch: 2.11.0 (cache) != 2.13.0 (now)"``. ``None`` when the file has this environment's
        section, has none at all, was missing or was corrupt (the corrupt file's warning says why),
        and for :meth:`of_file`. Writing does not reset it.
        """
        self._ensure_loaded()
        return self._mismatch_reason

    def load(self) -> None:
        """(Re-)read the file, replacing this instance's view of it.

        Missing file: empty. Corrupt file: moved aside with a warning, empty. A file with sections of
        other environments only: empty for this one, with a warning and :attr:`mismatch_reason`.

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
        self._sections = document.sections if document else ()
        self._mismatch_reason = None
        if self._fingerprint is None or not self._sections or self._own() is not None:
            return
        reasons = [section.fingerprint.mismatches(self._fingerprint) for section in self._sections]
        self._mismatch_reason = " | ".join("; ".join(lines) for lines in reasons)
        others = len(self._sections)
        entries = sum(len(section.entries) for section in self._sections)
        warnings.warn(
            MoetuneCacheWarning(
                f"tuning cache {self._path} has no entries for this environment, only for "
                f"{count_noun(others, 'other environment')} ({self._mismatch_reason}): re-tuning; the "
                f"next write adds this environment's section and keeps the "
                f"{count_noun(entries, 'entry', 'entries')} of the {'others' if others > 1 else 'other'}"
            ),
            stacklevel=3,
        )

    def environments(self) -> list[CacheEnvironment]:
        """Every section of the file found by the last load, in file order (copies)."""
        self._ensure_loaded()
        return copy.deepcopy(list(self._sections))

    def get(self, key: str) -> dict[str, Any] | None:
        """A copy of the entry stored under ``key``, or ``None``.

        Raises:
            ValueError: (:meth:`of_file` only) sections of several environments hold different entries
                under ``key``; read them with :meth:`environments`.
        """
        self._ensure_loaded()
        found = [section for section in self._readable() if key in section.entries]
        if not found:
            return None
        if any(section.entries[key] != found[0].entries[key] for section in found[1:]):
            gpus = ", ".join(section.fingerprint.gpu_name for section in found)
            raise ValueError(
                f"tuning cache {self._path} holds different entries for {key!r} in {len(found)} "
                f"environments ({gpus}): read them with environments()"
            )
        return copy.deepcopy(found[0].entries[key])

    def __contains__(self, key: object) -> bool:
        self._ensure_loaded()
        return any(key in section.entries for section in self._readable())

    def __len__(self) -> int:
        return len(self.keys())

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def keys(self) -> list[str]:
        """The stored keys (of every section, for :meth:`of_file`), sorted."""
        self._ensure_loaded()
        return sorted({key for section in self._readable() for key in section.entries})

    def put(self, key: str, entry: Mapping[str, Any]) -> None:
        """Store one entry; see :meth:`put_many`."""
        self.put_many({key: entry})

    def put_many(self, entries: Mapping[str, Mapping[str, Any]]) -> None:
        """Store entries in this environment's section, merged with what other processes wrote since
        (ours win); a file without the section gets it, after its other sections.

        Every entry is checked before the file is touched. The write holds ``<path>.lock``, re-reads
        the file, moves a corrupt one aside, and replaces the file atomically (as schema 2), so a
        reader sees the old file or the new one, never a mix.

        Raises:
            ValueError: a key is not a string, or an entry is not a JSON object that survives a JSON
                round trip unchanged (names the key; nothing is written); or this cache is of every
                environment (:meth:`of_file`), which has no section to write to.
            CacheWriteError: the lock could not be had (:class:`CacheLockTimeout` after
                ``lock_timeout`` seconds), or the file could not be written, or became unreadable or
                of a newer schema since it was loaded (nothing is written).
        """
        fingerprint = self._fingerprint
        if fingerprint is None:
            raise ValueError(
                f"tuning cache {self._path} is open for every environment (TuningCache.of_file): "
                f"write through TuningCache(path, fingerprint)"
            )
        checked = {key: _checked_entry(key, entry) for key, entry in entries.items()}
        if not checked:
            return
        self._ensure_loaded()  # a file without our section, or a corrupt one, warns before it is replaced
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise CacheWriteError(f"could not write the tuning cache {self._path}: {_cause(err)}") from err
        with self._locked():
            document = self._read_for_write()
            sections = list(document.sections) if document else []
            index = _index_of(sections, fingerprint)
            if index is None:
                created = datetime.now(_UTC).isoformat("T", "seconds")
                sections.append(CacheEnvironment(fingerprint, created, checked))
            else:
                sections[index] = replace(sections[index], entries={**sections[index].entries, **checked})
            self._write_locked(sections)
        self._sections = tuple(sections)

    @classmethod
    def of_file(
        cls, path: str | os.PathLike[str], *, lock_timeout: float = DEFAULT_LOCK_TIMEOUT_S
    ) -> TuningCache:
        """The cache of an existing file, for all of its environments (``fingerprint`` ``None``), so it
        can be read and pruned on any machine: :meth:`environments` lists the sections, :meth:`keys`
        and :meth:`remove_many` span all of them, :meth:`remove_environments` drops whole ones.

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
        cache = cls(path, None, lock_timeout=lock_timeout)
        cache._sections, cache._loaded = document.sections, True
        return cache

    @property
    def created(self) -> str | None:
        """When this environment's section was first written (UTC, ISO 8601); for :meth:`of_file`, the
        earliest section's. ``None`` if there is no valid file or no such section."""
        try:
            document = _read_document(self._path)
        except _CorruptCacheError:
            return None
        sections = [] if document is None else self._readable(document.sections)
        return min((section.created for section in sections), default=None)

    def remove_many(self, keys: Iterable[str]) -> list[str]:
        """Delete ``keys`` from this environment's section (from every section, for :meth:`of_file`;
        keys it does not hold are ignored) and return the ones deleted, sorted. Same lock, re-read and
        atomic replace as :meth:`put_many`, so entries other processes wrote meanwhile stay, and so do
        the other environments' sections.

        Raises:
            CacheWriteError: the lock could not be had (:class:`CacheLockTimeout` after
                ``lock_timeout`` seconds), or the file could not be written (nothing is removed).
        """
        wanted = set(keys)
        removed: set[str] = set()

        def prune(sections: list[CacheEnvironment]) -> list[CacheEnvironment] | None:
            pruned = []
            for section in sections:
                gone = wanted & section.entries.keys() if self._reads(section) else set()
                removed.update(gone)
                kept = {key: entry for key, entry in section.entries.items() if key not in gone}
                pruned.append(replace(section, entries=kept) if gone else section)
            return pruned if removed else None

        self._rewrite(prune)
        return sorted(removed)

    def remove_environments(self, fingerprints: Collection[EnvironmentFingerprint]) -> list[CacheEnvironment]:
        """Delete the sections of ``fingerprints`` (those the file has; the others are ignored) and
        return them as they were, in file order. Same lock, re-read and atomic replace as
        :meth:`put_many`; the other sections stay as they are.

        Raises:
            CacheWriteError: the lock could not be had (:class:`CacheLockTimeout` after
                ``lock_timeout`` seconds), or the file could not be written (nothing is removed).
        """
        wanted = set(fingerprints)
        dropped: list[CacheEnvironment] = []

        def drop(sections: list[CacheEnvironment]) -> list[CacheEnvironment] | None:
            dropped.extend(section for section in sections if section.fingerprint in wanted)
            return [section for section in sections if section.fingerprint not in wanted] if dropped else None

        self._rewrite(drop)
        return dropped

    def _rewrite(self, change: Callable[[list[CacheEnvironment]], list[CacheEnvironment] | None]) -> None:
        """Under the lock, re-read the file and write ``change(sections)`` unless it is ``None`` (nothing
        to change); this instance's view becomes what the file then holds."""
        with self._locked():
            document = self._read_for_write()
            sections = list(document.sections) if document else []
            changed = change(sections)
            if changed is not None:
                sections = changed
                self._write_locked(sections)
        self._sections, self._loaded = tuple(sections), True

    def _own(self) -> CacheEnvironment | None:
        """This environment's section in the view, if it has one (``None`` for :meth:`of_file`)."""
        if self._fingerprint is None:
            return None
        index = _index_of(self._sections, self._fingerprint)
        return None if index is None else self._sections[index]

    def _reads(self, section: CacheEnvironment) -> bool:
        """Whether this cache reads ``section``: its environment's, or any for :meth:`of_file`."""
        return self._fingerprint is None or section.fingerprint == self._fingerprint

    def _readable(self, sections: Iterable[CacheEnvironment] | None = None) -> list[CacheEnvironment]:
        """The sections of the view (or of ``sections``) this cache reads."""
        return [
            section for section in (self._sections if sections is None else sections) if self._reads(section)
        ]

    def _write_locked(self, sections: list[CacheEnvironment]) -> None:
        """Replace the file atomically with ``sections`` (the lock is held)."""
        body = {
            "schema": SCHEMA_VERSION,
            "environments": [
                {"metadata": {**s.fingerprint.to_dict(), "created": s.created}, "entries": s.entries}
                for s in sections
            ],
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

    def _read_for_write(self) -> _Document | None:
        """:meth:`_read_locked` for a write (the lock is held): a file that became unreadable or of a
        newer schema since this cache loaded it (another process, another version) is a
        :class:`CacheWriteError`, the file left as it is, not a ``ValueError`` mid-run."""
        try:
            return self._read_locked()
        except CacheWriteError:
            raise
        except ValueError as err:
            raise CacheWriteError(f"could not update the tuning cache {self._path}: {err}") from None

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
    """A cache file that passed validation: its sections (a schema-1 file has one)."""

    sections: tuple[CacheEnvironment, ...]


class _CorruptCacheError(Exception):
    """The file is not JSON or does not match the schema; the message says how."""


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def _index_of(sections: Iterable[CacheEnvironment], fingerprint: EnvironmentFingerprint) -> int | None:
    """Where ``fingerprint``'s section is in ``sections``, or ``None``."""
    return next((i for i, section in enumerate(sections) if section.fingerprint == fingerprint), None)


def count_noun(n: int, singular: str, plural: str | None = None) -> str:
    """``"1 entry"``, ``"3 entries"``: ``n`` and the noun in its number."""
    return f"{n} {singular if n == 1 else plural or singular + 's'}"


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
            f"{SCHEMA_VERSION} and older: upgrade pytest-moetune or point MOETUNE_CACHE/--moetune-cache "
            f"elsewhere"
        )
    if "schema" not in document:
        raise _CorruptCacheError(f"top-level keys are {sorted(document)}, expected {list(_TOP_LEVEL_KEYS)}")
    if type(schema) is not int:
        raise _CorruptCacheError(f"schema is {schema!r}, expected an int")
    if schema == 1:
        _check_keys("top-level keys", document, _SCHEMA_1_TOP_LEVEL_KEYS)
        return _Document((_read_section(document["metadata"], document["entries"], ""),))
    if schema != SCHEMA_VERSION:
        raise _CorruptCacheError(
            f"unknown schema version {schema} (this version reads 1 to {SCHEMA_VERSION})"
        )
    _check_keys("top-level keys", document, _TOP_LEVEL_KEYS)
    listed = document["environments"]
    if not isinstance(listed, list):
        raise _CorruptCacheError(f"environments is a JSON {type(listed).__name__}, not an array")
    sections: list[CacheEnvironment] = []
    for i, section in enumerate(listed):
        where = f"environments[{i}]"
        if not isinstance(section, dict):
            raise _CorruptCacheError(f"{where} is a JSON {type(section).__name__}, not an object")
        _check_keys(f"{where} keys", section, _SECTION_KEYS)
        read = _read_section(section["metadata"], section["entries"], f"{where}: ")
        twin = _index_of(sections, read.fingerprint)
        if twin is not None:
            raise _CorruptCacheError(f"environments[{twin}] and {where} are of one environment")
        sections.append(read)
    return _Document(tuple(sections))


def _check_keys(what: str, document: dict[str, Any], expected: tuple[str, ...]) -> None:
    if sorted(document) != list(expected):
        raise _CorruptCacheError(f"{what} are {sorted(document)}, expected {list(expected)}")


def _read_section(metadata: object, entries: object, where: str) -> CacheEnvironment:
    """One environment's ``metadata`` and ``entries``, validated; ``where`` prefixes the messages."""
    if not isinstance(metadata, dict):
        raise _CorruptCacheError(f"{where}metadata is a JSON {type(metadata).__name__}, not an object")
    if not isinstance(metadata.get("created"), str):
        raise _CorruptCacheError(f"{where}metadata.created is {metadata.get('created')!r}, expected a string")
    names = EnvironmentFingerprint.field_names()
    try:
        fingerprint = EnvironmentFingerprint.from_dict({k: v for k, v in metadata.items() if k in names})
    except ValueError as err:
        raise _CorruptCacheError(f"{where}metadata: {err}") from None
    if not isinstance(entries, dict):
        raise _CorruptCacheError(f"{where}entries is a JSON {type(entries).__name__}, not an object")
    for key, entry in entries.items():
        if not isinstance(entry, dict):
            raise _CorruptCacheError(f"{where}entry {key!r} is a JSON {type(entry).__name__}, not an object")
    return CacheEnvironment(fingerprint, metadata["created"], entries)


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
