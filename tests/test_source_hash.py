"""The kernel-source hash (``kernels.source_hash``) moves with code and ignores prose.

Run on copies of the real kernel sources in a temp folder: a docstring or comment edit keeps the
hash (so documentation fixes leave baselines and tuning caches valid), a code edit changes it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from kernels.source_hash import SOURCES, SPACE_SOURCES, code_text, source_hash, space_hash

KERNELS = Path(__file__).resolve().parents[1] / "kernels"


@pytest.fixture
def sources(tmp_path: Path) -> Path:
    for name in SOURCES + SPACE_SOURCES:
        shutil.copy(KERNELS / name, tmp_path / name)
    return tmp_path


def _edit(folder: Path, name: str, old: str, new: str) -> None:
    path = folder / name
    text = path.read_text()
    assert text.count(old) >= 1, f"{old!r} not in {name}"
    path.write_text(text.replace(old, new, 1))


def test_the_copy_hashes_like_the_package(sources: Path) -> None:
    assert source_hash(sources) == source_hash()
    assert space_hash(sources) == space_hash()
    assert len(source_hash()) == 16 and len(space_hash()) == 16


def test_a_runner_edit_moves_the_space_hash_not_the_kernels(sources: Path) -> None:
    """runner.py decides the tactic space (it keys tuning caches) but not the kernels' speed or
    results (baselines record only the kernel hash); its prose moves neither."""
    kernels, runner = source_hash(sources), space_hash(sources)
    _edit(sources, "runner.py", '"""``kernels.fused_moe`` (bf16/fp16)', '"""Reworded: ``kernels.fused_moe``')
    assert (source_hash(sources), space_hash(sources)) == (kernels, runner)
    _edit(sources, "runner.py", "space = tactics(kernel_problem(problem), gluon=self.gluon)",
          "space = tactics(kernel_problem(problem), gluon=self.gluon)[:1]")  # fmt: skip
    assert source_hash(sources) == kernels and space_hash(sources) != runner


def test_docstrings_and_comments_do_not_move_the_hash(sources: Path) -> None:
    before = source_hash(sources)
    _edit(
        sources,
        "gluon_gate_up.py",
        '"""fp8 block-scale MoE gate/up GEMM',
        '"""Reworded: fp8 block-scale MoE gate/up GEMM',
    )
    _edit(sources, "gluon_gate_up.py", "def _moe_load_block(", "# a new comment line\n\ndef _moe_load_block(")
    _edit(
        sources,
        "tactics.py",
        "    sorted_x: bool = False\n",
        "    sorted_x: bool = False  # a trailing comment\n",
    )
    _edit(
        sources, "tactics.py", '"""Rows per expert from which', '"""Reworded.\n\nRows per expert from which'
    )
    assert source_hash(sources) == before


@pytest.mark.parametrize(
    ("name", "old", "new"),
    [
        ("gluon_gate_up.py", 'H_BOX = {"wide": 128, "halves": 64}', 'H_BOX = {"wide": 128, "halves": 32}'),
        (
            "gluon_gate_up.py",
            "async_copy.wait_group(NUM_STAGES - 2)",
            "async_copy.wait_group(NUM_STAGES - 1)",
        ),
        ("tactics.py", "_SORTED_X_ROWS = 256", "_SORTED_X_ROWS = 512"),
        ("quant.py", "    h_ok = offs_h < H\n", "    h_ok = offs_h <= H\n"),
    ],
    ids=["constant", "jit-body", "default-rule", "quant-mask"],
)
def test_code_edits_move_the_hash(sources: Path, name: str, old: str, new: str) -> None:
    before = source_hash(sources)
    _edit(sources, name, old, new)
    assert source_hash(sources) != before


def test_code_text_keeps_strings_that_are_code_and_refuses_shared_lines() -> None:
    assert code_text('x = "a # b"  # cut\n\n\ny = f(x)\n') == 'x = "a # b"\ny = f(x)\n'
    assert code_text('def f():\n    """doc\n    more"""\n    return 1\n') == "def f():\n    return 1\n"
    with pytest.raises(ValueError, match="line 1: a bare string shares its line with code"):
        code_text('x = 1; "doc"\n')


def test_every_module_with_a_kernel_is_hashed() -> None:
    """A module of ``kernels/`` that defines a Triton or Gluon kernel decides speed and results, so
    a new one (``row_gather.py``, say) must join ``SOURCES`` or its edits would not move the hash.
    ``runner.py``'s only kernel is the test-only slowdown (``$MOETUNE_TEST_SLOWDOWN``)."""
    with_kernels = {path.name for path in KERNELS.glob("*.py")
                    if "@triton.jit" in path.read_text() or "@gluon.jit" in path.read_text()}  # fmt: skip
    assert {"fused_moe.py", "runner.py"} <= with_kernels
    assert with_kernels - {"runner.py"} <= set(SOURCES), sorted(with_kernels - set(SOURCES))
