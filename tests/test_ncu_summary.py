"""``benchmarks/ncu_summary.py`` reads Nsight Compute's per-SASS-line CSV and attributes stall samples
and executed instructions to reasons and opcodes (CPU only, synthetic and committed profiles)."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from benchmarks.ncu_summary import read_sass_csv, summarize

HEADER = (
    '"Address","Source","Warp Stall Sampling (All Samples)","Instructions Executed",'
    '"stall_barrier","stall_selected","stall_barrier (Not Issued)"'
)
ROWS = [
    '"0x10","FFMA R1, R2, R3, R1","30","600","0","30","0"',
    '"0x20","@!P0  BAR.SYNC.DEFER_BLOCKING 0x0","60","100","55","5","55"',
    '"0x30","QGMMA.64x128x32.F32.E4M3.E4M3 R24, gdesc[UR24], R24, gsb0","10","300","0","10","0"',
]
COMMITTED = (
    Path(__file__).parents[1] / "benchmarks/results/2026-11-28-h100-run-55-profile-ep1/halves-sass.csv.gz"
)


def row_of(text: str, label: str) -> list[str]:
    """The whitespace-split fields of the summary line whose first field is ``label``."""
    (fields,) = [line.split() for line in text.splitlines() if line.split()[:1] == [label]]
    return fields[1:]


def write(tmp_path: Path, text: str, gz: bool) -> Path:
    path = tmp_path / ("k.csv.gz" if gz else "k.csv")
    path.write_bytes(gzip.compress(text.encode()) if gz else text.encode())
    return path


@pytest.mark.parametrize("gz", [True, False], ids=["gzip", "plain"])
def test_samples_and_instructions_go_to_reasons_and_opcodes(tmp_path: Path, gz: bool) -> None:
    path = write(tmp_path, "\n".join(['"Kernel Name","k",', HEADER, *ROWS]) + "\n", gz)
    name, lines = read_sass_csv(path)
    assert name == "k"
    assert [line.opcode for line in lines] == ["FFMA", "BAR", "QGMMA"]  # predicate and modifiers dropped
    assert lines[1].reasons == {"stall_barrier": 55, "stall_selected": 5}  # "(Not Issued)" columns skipped
    text = summarize(lines, top=1)
    assert "100 samples, 1000 warp instructions executed" in text
    assert row_of(text, "stall_barrier") == ["55.0%"]
    assert row_of(text, "BAR") == ["60.0%", "10.0%"]  # 60 of 100 samples, 100 of 1000 instructions
    assert row_of(text, "FFMA") == ["30.0%", "60.0%"]
    assert text.splitlines()[-1].split()[:2] == ["60.0%", "0x20"]  # the hottest line only


def test_a_file_that_is_not_a_source_page_is_an_error_naming_it(tmp_path: Path) -> None:
    path = write(tmp_path, '"Address","Source"\n"0x10","FFMA"\n', gz=False)
    with pytest.raises(ValueError, match=r"k\.csv: not an ncu source-page CSV"):
        read_sass_csv(path)
    path = write(tmp_path, '"Kernel Name","k",\n"Address","Source"\n', gz=False)
    with pytest.raises(ValueError, match=r"k\.csv: missing column"):
        read_sass_csv(path)


def test_the_committed_halves_profile_reads_as_in_benchmarks_md() -> None:
    """BENCHMARKS.md ("Halves at block_m 128") quotes these numbers from this file."""
    name, lines = read_sass_csv(COMMITTED)
    assert name == "_gluon_gate_up_fp8_kernel"
    text = summarize(lines)
    assert "253907 samples, 947183104 warp instructions executed" in text
    assert row_of(text, "stall_selected") == ["22.8%"]
    assert row_of(text, "FFMA") == ["11.0%", "26.0%"]
