"""`bench peers` on a tiny length: the row format, the lined-up peers agreeing, missing peers named."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

from effstudio.bench import peers

ROW_KEYS = {"kind", "peer", "length", "effstudio_ms", "peer_ms", "ratio", "effstudio_peak_mb", "peer_peak_mb",
            "max_abs_diff"}
LENGTH = 128  # a whole number of Longformer's windows (2 x 64) and of two Reformer buckets

BUILT_PEER = "linear"  # fast-transformers compiles extensions when it installs: not in the bench extra
needs_peers = pytest.mark.skipif(
    not all(importlib.util.find_spec(p.module) for p in peers.PEERS if p.kind != BUILT_PEER),
    reason="the peer packages are not installed (pip install 'effstudio[bench]')",
)


@needs_peers
def test_rows_compare_every_installed_peer_on_the_same_inputs() -> None:
    result = peers.measure_peers((LENGTH,), repeats=1, memory=False)
    rows = {row["kind"]: row for row in result["rows"]}
    assert set(rows) == {p.kind for p in peers.PEERS if peers.installed(p)}
    for row in rows.values():
        assert ROW_KEYS <= set(row)
        assert row["length"] == LENGTH and row["effstudio_ms"] > 0 and row["peer_ms"] > 0
        assert row["ratio"] == pytest.approx(row["peer_ms"] / row["effstudio_ms"], rel=0.01)
    for kind in ("local", "longformer"):  # identical semantics: the same numbers
        assert rows[kind]["exact"] and rows[kind]["max_abs_diff"] <= peers.EXACT_TOLERANCE
    assert rows["performer"]["max_abs_diff"] < 1e-3  # the same projection; the peer adds 1e-4 per feature
    assert rows["reformer"]["max_abs_diff"] is None  # its own rotations and chunking: not comparable
    assert result["problems"] == []
    assert {m["kind"] for m in result["missing"]} == ({BUILT_PEER} - set(rows))
    assert all(m["install"].startswith("pip install") for m in result["missing"])


@needs_peers
def test_the_command_prints_json_with_peak_memory_of_each_side() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "effstudio", "bench", "peers", "--lengths", str(LENGTH), "--kinds", "local",
         "--repeats", "1", "--json"], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    (row,) = result["rows"]
    assert row["kind"] == "local" and row["effstudio_peak_mb"] > 0 and row["peer_peak_mb"] > 0
    assert result["settings"]["threads"] == 2 and result["settings"]["heads"] == peers.HEADS


def test_linear_against_fast_transformers_is_the_same_attention() -> None:
    pytest.importorskip("fast_transformers.attention")
    result = peers.measure_peers((LENGTH,), repeats=1, memory=False, kinds=("linear",))
    (row,) = result["rows"]
    assert row["kind"] == "linear" and row["effstudio_ms"] > 0 and row["peer_ms"] > 0
    assert row["max_abs_diff"] <= peers.EXACT_TOLERANCE  # elu(x) + 1 both; only the peer's 1e-6 differs


def test_bad_arguments_are_one_line_and_exit_2() -> None:
    done = subprocess.run([sys.executable, "-m", "effstudio", "bench", "peers", "--kinds", "nope"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2 and "unknown nope" in done.stderr
