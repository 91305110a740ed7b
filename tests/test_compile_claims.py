"""Compile claims shared by parallel tuners: first caller wins, in any process sharing the folder."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from pytest_moetune.compile_claims import CompileClaims


def test_the_first_claim_of_a_key_wins_and_later_ones_do_not(tmp_path: Path) -> None:
    mine, theirs = CompileClaims(tmp_path), CompileClaims(tmp_path)
    assert mine.claim("fused_moe|abc|bf16|m64") and not theirs.claim("fused_moe|abc|bf16|m64")
    assert theirs.claim("fused_moe|abc|bf16|m128") and not mine.claim("fused_moe|abc|bf16|m128")
    assert len(list(tmp_path.iterdir())) == 2


def _claim_all(folder: str, keys: list[str]) -> list[str]:
    claims = CompileClaims(folder)
    return [key for key in keys if claims.claim(key)]


def test_processes_racing_for_the_same_keys_each_win_a_key_once(tmp_path: Path) -> None:
    keys = [f"k{i}" for i in range(200)]
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        won = pool.starmap(_claim_all, [(str(tmp_path), keys)] * 4)
    assert sorted(key for keys_won in won for key in keys_won) == sorted(keys)


def test_a_missing_folder_is_an_error_that_names_it(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"compile-claims folder '.*nowhere' does not exist"):
        CompileClaims(tmp_path / "nowhere")
