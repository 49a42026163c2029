"""``hulytrio simulate``: exit codes, summary, trace, timeline, replay line, campaigns."""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import pytest

from hulytrio.sim.commands import register

ROOT = Path(__file__).resolve().parents[2]
FAILOVER = str(ROOT / "scenarios" / "failover.toml")


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="hulytrio")
    register(parser.add_subparsers())
    args = parser.parse_args(["simulate", *argv, "--no-progress"])
    code: int = args.func(args)
    return code


def test_failover_summary_trace_and_timeline(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                             ) -> None:
    trace, svg = tmp_path / "t.jsonl", tmp_path / "t.svg"
    assert run([FAILOVER, "--seed", "2", "--trace", str(trace), "--timeline", str(svg)]) == 0
    out = capsys.readouterr().out
    assert "failover db-main:" in out
    assert "result: OK" in out
    printed = next(x for x in out.splitlines() if x.startswith("trace sha256:")).split()[-1]
    assert hashlib.sha256(trace.read_bytes()).hexdigest() == printed
    picture = svg.read_text()
    assert picture.startswith("<svg")
    assert "owner of db-main" in picture
    assert run([FAILOVER, "--seed", "2"]) == 0
    assert printed in capsys.readouterr().out


def test_bad_scenario_is_an_error_message_not_a_traceback(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\nduration = "1s"\n[hub]\nalive = -1\n')
    assert run([str(bad)]) == 2
    err = capsys.readouterr().err
    assert "line 4" in err
    assert "hub.alive" in err
    assert "Traceback" not in err


def test_failure_prints_seed_and_replay_command(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    text = Path(FAILOVER).read_text().replace(
        "[hub]\n", '[hub]\nseeded_bugs = ["stateless-double-owner"]\n')
    buggy = tmp_path / "buggy.toml"
    buggy.write_text(text)
    assert run([str(buggy), "--seed", "5"]) == 1
    out = capsys.readouterr().out
    assert "FAILED with seed 5" in out
    assert f"hulytrio simulate {buggy} --seed 5" in out
    assert "exclusive-serving" in out


def test_check_determinism(capsys: pytest.CaptureFixture[str]) -> None:
    assert run([FAILOVER, "--check-determinism"]) == 0
    assert "deterministic" in capsys.readouterr().out


def test_seeds_campaign_in_processes(capsys: pytest.CaptureFixture[str]) -> None:
    assert run([FAILOVER, "--seeds", "1..4", "--jobs", "2"]) == 0
    out = capsys.readouterr().out
    assert "4 seeds" in out
    assert "0 failed" in out
    assert "probes never reached:" in out


def test_campaign_reports_failing_seeds(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                       ) -> None:
    text = Path(FAILOVER).read_text().replace(
        "[hub]\n", '[hub]\nseeded_bugs = ["stateless-double-owner"]\n')
    buggy = tmp_path / "buggy.toml"
    buggy.write_text(text)
    assert run([str(buggy), "--seeds", "1..2", "--jobs", "1"]) == 1
    out = capsys.readouterr().out
    assert "2 failed" in out
    assert f"replay: hulytrio simulate {buggy} --seed 2" in out


def test_bad_seed_range(capsys: pytest.CaptureFixture[str]) -> None:
    assert run([FAILOVER, "--seeds", "5..1"]) == 2
    assert "below" in capsys.readouterr().err


@pytest.mark.parametrize("option", ["--trace", "--timeline"])
def test_an_output_into_a_missing_folder_fails_before_the_run(
        option: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "no" / "such" / "dir" / "out.svg"
    assert run([FAILOVER, option, str(target)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "", "nothing ran"
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"error: {option} {target}:")
    assert "does not exist" in lines[0]
    assert not target.parent.exists()
