"""The persistent tuning cache: format, one section per environment, schema-1 files, corruption,
atomic and concurrent writes."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from filelock import FileLock

from pytest_moetune import cache as cache_module
from pytest_moetune.cache import (
    CacheEnvironment,
    CacheLockTimeout,
    CacheWriteError,
    MoetuneCacheWarning,
    TuningCache,
    default_cache_path,
)
from pytest_moetune.fingerprint import EnvironmentFingerprint
from pytest_moetune.testing import H100_FINGERPRINT

REPO = Path(__file__).resolve().parents[1]
FP = H100_FINGERPRINT
A100 = EnvironmentFingerprint("NVIDIA A100-SXM4-80GB", "8.0", "580.82.07", "2.11.0+cu130", "3.6.0", "0.1.0")
TACTIC = {"BLOCK_M": 64, "BLOCK_N": 128, "BLOCK_K": 64, "GROUP_M": 8, "num_warps": 4, "num_stages": 3}


def entry(i: int = 0) -> dict[str, object]:
    return {"tactic": {**TACTIC, "BLOCK_M": 16 * (i % 8 + 1)}, "time_us": 10.5 + i, "failed": [["x", "smem"]]}


def siblings(path: Path, tag: str) -> list[Path]:
    return sorted(path.parent.glob(f"{path.name}.{tag}-*"))


def written(path: Path, entries: dict[str, object], fingerprint: EnvironmentFingerprint = FP) -> bytes:
    """Write a cache file through the public API and return its bytes."""
    TuningCache(path, fingerprint).put_many(entries)
    return path.read_bytes()


def added(path: Path, entries: dict[str, object], fingerprint: EnvironmentFingerprint) -> None:
    """Add ``fingerprint``'s section to a file of other environments (its first read warns)."""
    with pytest.warns(MoetuneCacheWarning, match="has no entries for this environment"):
        TuningCache(path, fingerprint).put_many(entries)


def sections(path: Path) -> dict[str, dict[str, object]]:
    """The file's sections as ``{gpu_name: {"metadata": ..., "entries": ...}}``."""
    body = json.loads(path.read_text())
    assert body["schema"] == 2
    return {section["metadata"]["gpu_name"]: section for section in body["environments"]}


# --- format and round trip ---------------------------------------------------------------------------


def test_round_trip_and_file_format(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "tuning.json"
    cache = TuningCache(str(path), FP)
    before = datetime.now(cache_module._UTC).replace(microsecond=0)
    cache.put("b", entry(1))
    cache.put("a", entry(2))
    assert cache.path == path
    assert cache.get("a") == entry(2) and cache.get("b") == entry(1) and cache.get("c") is None
    assert "a" in cache and "c" not in cache and len(cache) == 2
    assert cache.keys() == ["a", "b"] == list(cache)

    body = json.loads(path.read_text())
    assert path.read_text() == json.dumps(body, indent=1, sort_keys=True) + "\n"
    assert set(body) == {"schema", "environments"} and body["schema"] == 2
    (section,) = body["environments"]
    assert set(section) == {"metadata", "entries"}
    assert section["entries"] == {"a": entry(2), "b": entry(1)}
    created = datetime.fromisoformat(section["metadata"].pop("created"))
    assert created.utcoffset() == timedelta(0)
    assert before <= created <= datetime.now(cache_module._UTC)
    assert section["metadata"] == FP.to_dict()
    assert not list(tmp_path.rglob("*.tmp"))


def test_get_returns_a_copy(tmp_path: Path) -> None:
    cache = TuningCache(tmp_path / "c.json", FP)
    cache.put("k", entry())
    got = cache.get("k")
    assert got is not None
    got["tactic"]["BLOCK_M"] = 999
    assert cache.get("k") == entry()


def test_missing_file_is_empty_and_reading_creates_nothing(tmp_path: Path) -> None:
    cache = TuningCache(tmp_path / "sub" / "c.json", FP)
    assert len(cache) == 0 and cache.get("k") is None and cache.keys() == [] and "k" not in cache
    assert cache.mismatch_reason is None and cache.environments() == []
    assert not list(tmp_path.iterdir())


def test_entries_survive_a_reload_in_a_new_instance(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    TuningCache(path, FP).put_many({f"k{i}": entry(i) for i in range(5)})
    again = TuningCache(path, FP)
    assert again.keys() == [f"k{i}" for i in range(5)]
    assert all(again.get(f"k{i}") == entry(i) for i in range(5))


def test_put_merges_ours_win_and_created_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    TuningCache(path, FP).put_many({"a": entry(1), "b": entry(2)})
    created = sections(path)[FP.gpu_name]["metadata"]["created"]
    TuningCache(path, FP).put_many({"b": entry(3), "c": entry(4)})
    (section,) = sections(path).values()
    assert section["entries"] == {"a": entry(1), "b": entry(3), "c": entry(4)}
    assert section["metadata"]["created"] == created == TuningCache(path, FP).created


def test_a_write_merges_entries_other_writers_added_since_our_load(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    ours, theirs = TuningCache(path, FP), TuningCache(path, FP)
    ours.put("mine-1", entry(1))
    theirs.put("theirs", entry(2))  # `ours` loaded before this
    ours.put("mine-2", entry(3))
    assert ours.keys() == ["mine-1", "mine-2", "theirs"]
    assert TuningCache(path, FP).keys() == ["mine-1", "mine-2", "theirs"]


def test_put_many_of_nothing_writes_nothing(tmp_path: Path) -> None:
    TuningCache(tmp_path / "c.json", FP).put_many({})
    assert not list(tmp_path.iterdir())


# --- one section per environment ----------------------------------------------------------------------


@pytest.mark.parametrize("field", EnvironmentFingerprint.field_names())
def test_an_environment_without_a_section_reads_empty_and_says_why(tmp_path: Path, field: str) -> None:
    path = tmp_path / "c.json"
    before = written(path, {"k": entry()})
    now = EnvironmentFingerprint(**{**FP.to_dict(), field: "other"})
    cache = TuningCache(path, now)
    with pytest.warns(MoetuneCacheWarning) as record:
        assert cache.get("k") is None
    assert len(record) == 1
    message = str(record[0].message)
    why = f"{field}: {getattr(FP, field)} (cache) != other (now)"
    assert message == (
        f"tuning cache {path} has no entries for this environment, only for 1 other environment ({why}): "
        f"re-tuning; the next write adds this environment's section and keeps the 1 entry of the other"
    )
    assert cache.mismatch_reason == why
    assert len(cache) == 0 and "k" not in cache and cache.created is None
    assert path.read_bytes() == before  # reading writes nothing


def test_mismatch_reason_lists_every_mismatch_of_every_other_environment(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    written(path, {"k": entry()})
    added(path, {"k": entry(1)}, A100)
    now = EnvironmentFingerprint(**{**FP.to_dict(), "torch": "2.13.0", "triton": "3.9.0"})
    with pytest.warns(MoetuneCacheWarning, match=r"only for 2 other environments \(torch: 2\.11\.0\+cu130 "):
        reason = TuningCache(path, now).mismatch_reason
    assert reason == (
        "torch: 2.11.0+cu130 (cache) != 2.13.0 (now); triton: 3.6.0 (cache) != 3.9.0 (now) | "
        "gpu_name: NVIDIA A100-SXM4-80GB (cache) != NVIDIA H100 80GB HBM3 (now); "
        "sm: 8.0 (cache) != 9.0 (now); "
        "torch: 2.11.0+cu130 (cache) != 2.13.0 (now); triton: 3.6.0 (cache) != 3.9.0 (now)"
    )


def test_a_write_adds_a_section_and_keeps_the_other_environments(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    written(path, {"old": entry(1), "shared": entry(2)})
    h100 = sections(path)[FP.gpu_name]
    now = EnvironmentFingerprint(**{**FP.to_dict(), "driver": "590.1"})
    cache = TuningCache(path, now)
    with pytest.warns(MoetuneCacheWarning, match="driver"):
        cache.put("shared", entry(3))
    assert not siblings(path, "stale") and not siblings(path, "corrupt")
    body = json.loads(path.read_text())
    assert [s["metadata"]["driver"] for s in body["environments"]] == ["580.82.07", "590.1"]
    assert body["environments"][0] == h100  # the other environment's section, as it was
    assert body["environments"][1]["entries"] == {"shared": entry(3)}
    assert {k: v for k, v in body["environments"][1]["metadata"].items() if k != "created"} == now.to_dict()
    assert cache.keys() == ["shared"] and cache.get("shared") == entry(3)
    assert cache.mismatch_reason == "driver: 580.82.07 (cache) != 590.1 (now)"  # why it had to re-tune
    assert TuningCache(path, now).mismatch_reason is None
    assert TuningCache(path, FP).keys() == ["old", "shared"] and TuningCache(path, FP).get("shared") == entry(
        2
    )


def test_two_environments_alternating_writes_keep_both_sections_and_warn_once_each(tmp_path: Path) -> None:
    """A file shared by two kinds of runner (NFS home, a CI cache): each reads its own section, so a
    second round finds everything each tuned in the first, and no write moves the file aside."""
    path = tmp_path / "c.json"
    with pytest.warns(MoetuneCacheWarning) as record:
        for round_ in range(2):
            for fingerprint in (FP, A100):
                cache = TuningCache(path, fingerprint)
                missing = [key for key in ("a", "b") if cache.get(f"{fingerprint.sm}-{key}") is None]
                assert missing == (["a", "b"] if round_ == 0 else [])
                cache.put_many({f"{fingerprint.sm}-{key}": entry(round_) for key in missing})
    (warning,) = record  # the A100's first read; the H100's found an empty file
    assert "only for 1 other environment (gpu_name: NVIDIA H100" in str(warning.message)
    assert {gpu: sorted(section["entries"]) for gpu, section in sections(path).items()} == {
        FP.gpu_name: ["9.0-a", "9.0-b"],
        A100.gpu_name: ["8.0-a", "8.0-b"],
    }
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.json", "c.json.lock"]


def test_sections_with_one_key_keep_their_own_entries(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    written(path, {"k": entry(1)})
    added(path, {"k": entry(2)}, A100)
    assert TuningCache(path, FP).get("k") == entry(1) and TuningCache(path, A100).get("k") == entry(2)


# --- schema 1: one environment per file -------------------------------------------------------------------


def _schema_1(entries: dict[str, object], fingerprint: EnvironmentFingerprint = FP) -> bytes:
    metadata = {**fingerprint.to_dict(), "created": "2026-01-01T00:00:00+00:00"}
    return json.dumps({"schema": 1, "metadata": metadata, "entries": entries}, indent=1).encode()


def test_a_schema_1_file_reads_as_its_one_environment_and_is_left_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_bytes(data := _schema_1({"a": entry(1), "b": entry(2)}))
    cache = TuningCache(path, FP)
    assert cache.keys() == ["a", "b"] and cache.get("b") == entry(2)
    assert cache.created == "2026-01-01T00:00:00+00:00" and cache.mismatch_reason is None
    (section,) = cache.environments()
    assert section == CacheEnvironment(FP, "2026-01-01T00:00:00+00:00", {"a": entry(1), "b": entry(2)})
    assert path.read_bytes() == data


@pytest.mark.parametrize("writer", [FP, A100], ids=["same-environment", "other-environment"])
def test_a_schema_1_file_is_rewritten_as_schema_2_by_the_next_write_losing_nothing(
    tmp_path: Path, writer: EnvironmentFingerprint
) -> None:
    path = tmp_path / "c.json"
    path.write_bytes(_schema_1({"a": entry(1), "b": entry(2)}))
    cache = TuningCache(path, writer)
    if writer == FP:
        cache.put("c", entry(3))
    else:
        with pytest.warns(
            MoetuneCacheWarning, match="gpu_name: NVIDIA H100 80GB HBM3 .cache. != NVIDIA A100"
        ):
            cache.put("c", entry(3))
    old = {**FP.to_dict(), "created": "2026-01-01T00:00:00+00:00"}
    found = sections(path)
    assert found[FP.gpu_name]["metadata"] == old
    if writer == FP:
        assert list(found) == [FP.gpu_name]
        assert found[FP.gpu_name]["entries"] == {"a": entry(1), "b": entry(2), "c": entry(3)}
    else:
        assert list(found) == [FP.gpu_name, A100.gpu_name]
        assert found[FP.gpu_name]["entries"] == {"a": entry(1), "b": entry(2)}
        assert found[A100.gpu_name]["entries"] == {"c": entry(3)}
    assert not siblings(path, "stale") and not siblings(path, "corrupt")


# --- several environments at once: of_file and removing --------------------------------------------------


def test_of_file_reads_every_environment_and_cannot_write(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    written(path, {"a": entry(1), "same": entry(9), "differs": entry(2)})
    added(path, {"b": entry(3), "same": entry(9), "differs": entry(4)}, A100)
    cache = TuningCache.of_file(path)
    assert cache.fingerprint is None and repr(cache) == f"TuningCache({str(path)!r}, every environment)"
    assert [s.fingerprint for s in cache.environments()] == [FP, A100]
    assert cache.keys() == ["a", "b", "differs", "same"] and len(cache) == 4 and "b" in cache
    assert cache.get("a") == entry(1) and cache.get("same") == entry(9) and cache.get("c") is None
    with pytest.raises(ValueError, match=r"different entries for 'differs' in 2 environments \(NVIDIA H100"):
        cache.get("differs")
    assert cache.created == min(s.created for s in cache.environments())
    before = path.read_bytes()
    with pytest.raises(
        ValueError, match=r"c\.json is open for every environment .*TuningCache\(path, fingerprint\)"
    ):
        cache.put("x", entry())
    assert path.read_bytes() == before


def test_remove_many_removes_from_its_own_section_or_for_of_file_from_all(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    written(path, {"a": entry(1), "b": entry(2)})
    added(path, {"a": entry(3), "c": entry(4)}, A100)
    assert TuningCache(path, A100).remove_many(["a", "b", "zzz"]) == ["a"]
    assert {gpu: sorted(s["entries"]) for gpu, s in sections(path).items()} == {
        FP.gpu_name: ["a", "b"],
        A100.gpu_name: ["c"],
    }
    elsewhere = EnvironmentFingerprint(**{**FP.to_dict(), "torch": "9"})
    before = path.read_bytes()
    assert TuningCache(path, elsewhere).remove_many(["a", "b", "c"]) == []  # it has no section
    assert path.read_bytes() == before
    cache = TuningCache.of_file(path)
    assert cache.remove_many(["b", "c"]) == ["b", "c"]
    assert {gpu: sorted(s["entries"]) for gpu, s in sections(path).items()} == {
        FP.gpu_name: ["a"],
        A100.gpu_name: [],
    }
    assert cache.keys() == ["a"]


def test_remove_environments_drops_whole_sections_and_keeps_the_others(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    written(path, {"a": entry(1)})
    added(path, {"b": entry(2)}, A100)
    h100 = sections(path)[FP.gpu_name]
    elsewhere = EnvironmentFingerprint(**{**FP.to_dict(), "torch": "9"})
    cache = TuningCache.of_file(path)
    (dropped,) = cache.remove_environments([A100, elsewhere])
    assert dropped.fingerprint == A100 and dropped.entries == {"b": entry(2)}
    assert list(sections(path).values()) == [h100]
    assert [s.fingerprint for s in cache.environments()] == [FP]
    before = path.read_bytes()
    assert cache.remove_environments([A100]) == [] and path.read_bytes() == before
    assert [s.fingerprint for s in TuningCache(path, FP).remove_environments([FP])] == [FP]
    assert json.loads(path.read_text()) == {"schema": 2, "environments": []}
    assert TuningCache(path, A100).get("b") is None  # an empty file: no warning


# --- corrupt files ----------------------------------------------------------------------------------------


def _valid_body() -> dict[str, object]:
    return {"schema": 1, "metadata": {**FP.to_dict(), "created": "2026-01-01T00:00:00+00:00"}, "entries": {}}


def _corrupt(change: dict[str, object]) -> bytes:
    body = {**_valid_body(), **change}
    return json.dumps({k: v for k, v in body.items() if v is not ...}).encode()


CORRUPT = {
    "truncated": (json.dumps({**_valid_body(), "entries": {"k": entry()}}).encode()[:-7], "not valid JSON"),
    "garbage-bytes": (b"\x00\xff\xfe\x9c garbage \x80", "not valid JSON"),
    "empty": (b"", "not valid JSON"),
    "top-level-list": (b"[1, 2]", "top level is a JSON list"),
    "schema-str": (_corrupt({"schema": "1"}), "schema is '1', expected an int"),
    "schema-bool": (_corrupt({"schema": True}), "schema is True"),
    "schema-old": (_corrupt({"schema": 0}), "unknown schema version 0"),
    "missing-entries": (_corrupt({"entries": ...}), "top-level keys"),
    "extra-top-level": (_corrupt({"extra": 1}), "top-level keys"),
    "entries-list": (_corrupt({"entries": [["k", {}]]}), "entries is a JSON list"),
    "entry-not-dict": (_corrupt({"entries": {"k": [1, 2]}}), "entry 'k' is a JSON list"),
    "metadata-str": (_corrupt({"metadata": "h100"}), "metadata is a JSON str"),
    "metadata-torch-int": (
        _corrupt({"metadata": {**FP.to_dict(), "torch": 2, "created": "x"}}),
        "field torch must be a string",
    ),
    "metadata-missing-sm": (
        _corrupt({"metadata": {k: v for k, v in {**FP.to_dict(), "created": "x"}.items() if k != "sm"}}),
        "missing field(s) sm",
    ),
    "metadata-no-created": (_corrupt({"metadata": FP.to_dict()}), "metadata.created"),
    "nan": (
        json.dumps({**_valid_body(), "entries": {"k": {"t": float("nan")}}}).encode(),
        "non-standard JSON constant NaN",
    ),
    "no-schema": (
        b'{"environments": []}',
        "top-level keys are ['environments'], expected ['environments', 'schema']",
    ),
}


def _section(fingerprint: EnvironmentFingerprint = FP, **change: object) -> dict[str, object]:
    section = {"metadata": {**fingerprint.to_dict(), "created": "2026-01-01T00:00:00+00:00"}, "entries": {}}
    return {k: v for k, v in {**section, **change}.items() if v is not ...}


def _corrupt_2(*environments: object, **top: object) -> bytes:
    body = {"schema": 2, "environments": list(environments), **top}
    return json.dumps({k: v for k, v in body.items() if v is not ...}).encode()


CORRUPT_2 = {
    "2-extra-top-level": (
        _corrupt_2(_section(), metadata={}),
        "top-level keys are ['environments', 'metadata',",
    ),
    "2-no-environments": (
        _corrupt_2(environments=...),
        "top-level keys are ['schema'], expected ['environments', ",
    ),
    "2-environments-object": (_corrupt_2(environments={}), "environments is a JSON dict, not an array"),
    "2-section-list": (_corrupt_2(_section(), []), "environments[1] is a JSON list, not an object"),
    "2-section-keys": (_corrupt_2(_section(entries=...)), "environments[0] keys are ['metadata'], expected"),
    "2-metadata-no-sm": (
        _corrupt_2(_section(), _section(metadata={**A100.to_dict(), "sm": None, "created": "x"})),
        "environments[1]: metadata: environment fingerprint field sm must be a string",
    ),
    "2-entry-not-dict": (_corrupt_2(_section(entries={"k": 1})), "environments[0]: entry 'k' is a JSON int"),
    "2-twins": (
        _corrupt_2(_section(), _section(A100), _section(entries={"k": {}})),
        "environments[0] and environments[2] are of one environment",
    ),
    "2-nan": (_corrupt_2(_section(entries={"k": {"t": float("nan")}})), "non-standard JSON constant NaN"),
}
CORRUPT.update(CORRUPT_2)


@pytest.mark.parametrize(("data", "reason"), CORRUPT.values(), ids=CORRUPT.keys())
def test_corrupt_file_is_moved_aside_with_its_bytes(tmp_path: Path, data: bytes, reason: str) -> None:
    path = tmp_path / "c.json"
    path.write_bytes(data)
    cache = TuningCache(path, FP)
    with pytest.warns(MoetuneCacheWarning) as record:
        assert len(cache) == 0
    (aside,) = siblings(path, "corrupt")
    assert aside.read_bytes() == data
    assert not path.exists()
    (warning,) = record
    message = str(warning.message)
    assert str(path) in message and str(aside) in message and "corrupt" in message
    assert reason in message
    assert cache.mismatch_reason is None

    cache.put("k", entry())  # and the cache works on
    assert TuningCache(path, FP).get("k") == entry()
    assert siblings(path, "corrupt") == [aside]


def test_file_corrupted_after_load_is_moved_aside_by_the_next_write(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    cache = TuningCache(path, FP)
    cache.put("a", entry(1))
    path.write_bytes(b'{"schema": 1, "entr')
    with pytest.warns(MoetuneCacheWarning, match="corrupt"):
        cache.put("b", entry(2))
    (aside,) = siblings(path, "corrupt")
    assert aside.read_bytes() == b'{"schema": 1, "entr'
    assert TuningCache(path, FP).keys() == ["b"] == cache.keys()


def test_newer_schema_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    data = json.dumps({"schema": 3, "format": "something new"}).encode()
    path.write_bytes(data)
    with pytest.raises(ValueError, match=r"c\.json has schema version 3, .* reads schema 2 and older"):
        TuningCache(path, FP).get("k")
    with pytest.raises(ValueError, match="schema version 3"):
        TuningCache(path, FP).put("k", entry())
    with pytest.raises(ValueError, match="schema version 3"):
        TuningCache.of_file(path)
    assert path.read_bytes() == data
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")) == ["c.json"]


def test_a_file_turned_newer_schema_after_loading_is_a_write_error(tmp_path: Path) -> None:
    """Another process (a newer plugin) replaced the file after this cache read it: writes refuse
    with a CacheWriteError naming the file (the tuner's one-line error), and leave it as it is."""
    path = tmp_path / "c.json"
    cache = TuningCache(path, FP)
    cache.put("a", entry(1))
    data = json.dumps({"schema": 3, "format": "something new"}).encode()
    path.write_bytes(data)
    with pytest.raises(CacheWriteError, match=r"could not update the tuning cache .*c\.json: .*version 3"):
        cache.put("b", entry(2))
    with pytest.raises(CacheWriteError, match="schema version 3"):
        cache.remove_many(["a"])
    assert path.read_bytes() == data


# --- bad entries and atomic writes --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("obj", {"x": object()}, "not JSON-serializable"),
        ("nan", {"t": float("inf")}, "not JSON-serializable"),
        ("tuple", {"tactic": (64, 128)}, "would not read back equal"),
        ("intkeys", {"buckets": {1: "a"}}, "would not read back equal"),
        ("list", [1, 2], "must be a dict"),
    ],
)
def test_bad_entry_is_refused_before_the_file_is_touched(
    tmp_path: Path, key: str, value: object, message: str
) -> None:
    path = tmp_path / "c.json"
    before = written(path, {"old": entry()})
    cache = TuningCache(path, FP)
    with pytest.raises(ValueError, match=f"key '{key}'.*{message}"):
        cache.put_many({"fine": entry(1), key: value})  # type: ignore[dict-item]
    assert path.read_bytes() == before
    assert cache.keys() == ["old"]


def test_non_string_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="keys must be strings, got int 7"):
        TuningCache(tmp_path / "c.json", FP).put(7, entry())  # type: ignore[arg-type]
    assert not list(tmp_path.iterdir())


def _fail_on_the_file_dump(monkeypatch: pytest.MonkeyPatch) -> None:
    real = json.dumps

    def dumps(obj: object, **kwargs: object) -> str:
        if "indent" in kwargs:  # the whole-file serialization, not the per-entry check
            raise RuntimeError("serialization blew up")
        return real(obj, **kwargs)

    monkeypatch.setattr(cache_module.json, "dumps", dumps)


def _fail_on_fsync(monkeypatch: pytest.MonkeyPatch) -> None:
    def fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cache_module.os, "fsync", fsync)


def _fail_on_replace(monkeypatch: pytest.MonkeyPatch) -> None:
    def replace(src: object, dst: object) -> None:
        raise PermissionError("replace refused")

    monkeypatch.setattr(cache_module.os, "replace", replace)


@pytest.mark.parametrize(
    ("sabotage", "error"),
    [
        (_fail_on_the_file_dump, RuntimeError),
        (_fail_on_fsync, CacheWriteError),
        (_fail_on_replace, CacheWriteError),
    ],
)
def test_a_failed_write_leaves_the_old_file_byte_identical(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sabotage, error: type[Exception]
) -> None:
    path = tmp_path / "c.json"
    before = written(path, {f"k{i}": entry(i) for i in range(20)})
    cache = TuningCache(path, FP)
    cache.load()
    sabotage(monkeypatch)
    with pytest.raises(error):
        cache.put("new", entry(99))
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert "new" not in cache and len(cache) == 20
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")) == ["c.json"]
    cache.put("new", entry(99))  # the lock was released
    assert TuningCache(path, FP).get("new") == entry(99)


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_file_mode_is_kept_or_follows_the_umask(tmp_path: Path) -> None:
    new, kept = tmp_path / "new.json", tmp_path / "kept.json"
    old_umask = os.umask(0o027)
    try:
        TuningCache(new, FP).put("k", entry())
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(new.stat().st_mode) == 0o640
    written(kept, {"a": entry()})
    kept.chmod(0o664)
    TuningCache(kept, FP).put("b", entry())
    assert stat.S_IMODE(kept.stat().st_mode) == 0o664


def test_lock_timeout_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    held = r"could not lock .*c\.json\.lock within 0\.2 s to update .*c\.json: another process holds it$"
    with FileLock(tmp_path / "c.json.lock"), pytest.raises(TimeoutError, match=held):
        TuningCache(path, FP, lock_timeout=0.2).put("k", entry())
    assert not path.exists()


def test_a_lock_timeout_on_an_unwritable_lock_file_does_not_blame_another_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lock file this user cannot write can look like a held lock (file systems that report
    EACCES for contention, the soft fallback): the message names the file, not another process."""
    path, lock = tmp_path / "c.json", tmp_path / "c.json.lock"
    before = written(path, {"a": entry()})
    lock.touch()
    real_access = os.access
    monkeypatch.setattr(cache_module.os, "access", lambda p, mode: Path(p) != lock and real_access(p, mode))
    why = re.escape(f"within 0.2 s to update the tuning cache {path}: {lock} is not writable by this user")
    with FileLock(lock), pytest.raises(CacheLockTimeout, match=why + "$"):
        TuningCache(path, FP, lock_timeout=0.2).put("k", entry())
    assert path.read_bytes() == before


def test_a_lock_that_cannot_be_opened_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, lock = tmp_path / "c.json", tmp_path / "c.json.lock"
    before = written(path, {"a": entry()})

    def acquire(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", str(lock))

    monkeypatch.setattr(cache_module.FileLock, "acquire", acquire)
    why = f"could not lock {lock} to update the tuning cache {path}: Permission denied ({lock})"
    for change in (lambda c: c.put("k", entry()), lambda c: c.remove_many(["a"])):
        with pytest.raises(CacheWriteError) as raised:
            change(TuningCache(path, FP))
        assert str(raised.value) == why
        assert path.read_bytes() == before


# --- two processes at once -------------------------------------------------------------------------------

WRITER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from pytest_moetune.cache import TuningCache
    from pytest_moetune.fingerprint import EnvironmentFingerprint

    path, fingerprint, worker, count, go = sys.argv[1:]
    cache = TuningCache(path, EnvironmentFingerprint.from_dict(json.loads(fingerprint)))
    cache.get("warm-up")  # load before the others write: every put must merge what they added since
    while not Path(go).exists():
        time.sleep(0.002)
    for i in range(int(count)):
        cache.put(f"w{worker}-k{i:03d}", {"worker": int(worker), "i": i})
    """
)


@pytest.mark.parametrize("environments", [1, 2], ids=["one-environment", "two-environments"])
def test_concurrent_writers_keep_every_entry(tmp_path: Path, environments: int) -> None:
    """Four writers at once, all of one environment or two of each (a cache shared by two GPU models):
    every entry lands in its environment's section."""
    path, go = tmp_path / "shared" / "tuning.json", tmp_path / "go"
    workers, count = 4, 50
    fingerprints = [FP, A100][:environments]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    environment = [json.dumps(fingerprints[w % environments].to_dict()) for w in range(workers)]
    argv = [
        [sys.executable, "-c", WRITER, str(path), environment[w], str(w), str(count), str(go)]
        for w in range(workers)
    ]
    procs = [
        subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for args in argv
    ]
    time.sleep(0.5)  # let them start and load the (missing) file
    go.touch()
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    assert [s.fingerprint for s in TuningCache.of_file(path).environments()] in (
        fingerprints,
        fingerprints[::-1],
    )
    for e, fingerprint in enumerate(fingerprints):
        cache = TuningCache(path, fingerprint)
        mine = range(e, workers, environments)
        expected = {f"w{w}-k{i:03d}": {"worker": w, "i": i} for w in mine for i in range(count)}
        assert {key: cache.get(key) for key in cache} == expected
    assert not list(path.parent.glob("*.tmp")) and not siblings(path, "corrupt")


# --- default path and imports ---------------------------------------------------------------------------


def test_default_cache_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MOETUNE_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert default_cache_path() == tmp_path / "home" / ".cache" / "pytest-moetune" / "tuning.json"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    assert default_cache_path() == tmp_path / "home" / ".cache" / "pytest-moetune" / "tuning.json"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_path() == tmp_path / "xdg" / "pytest-moetune" / "tuning.json"
    monkeypatch.setenv("MOETUNE_CACHE", str(tmp_path / "ci" / "moe.json"))
    assert default_cache_path() == tmp_path / "ci" / "moe.json"
    monkeypatch.setenv("MOETUNE_CACHE", "~/tune.json")
    assert default_cache_path() == tmp_path / "home" / "tune.json"


def test_modules_import_and_probe_without_torch() -> None:
    script = textwrap.dedent(
        """
        import sys
        sys.modules["torch"] = None  # any `import torch` now raises ImportError
        sys.modules["triton"] = None
        import pytest_moetune.fingerprint, pytest_moetune.cache
        from pytest_moetune.cache import TuningCache
        fp = pytest_moetune.fingerprint.EnvironmentFingerprint.current()
        assert (fp.gpu_name, fp.sm, fp.torch) == ("cpu", "cpu", "none"), fp
        assert sys.modules["torch"] is None and sys.modules["triton"] is None
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
