"""Scenario files: parsing, error messages naming key and line, writing back out."""

from __future__ import annotations

from pathlib import Path

import pytest

from hulytrio.sim.scenario import (
    FaultSpec,
    OperationSpec,
    ScenarioError,
    Span,
    dump_scenario,
    load_scenario,
    parse_scenario,
    parse_seconds,
    parse_span,
)

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"

GOOD = """\
name = "x"
duration = "10s"

[hub]
alive = "2s"

[[agents]]
name = "a"
kinds = ["echo"]
count = 2
stateless = [{ uuid = "u1", kind = "echo" }]
start_delay = "1ms..5ms"

[[clients]]
name = "c"
kind = "echo"
request_interval = "100ms"

[[faults]]
at = "1.5s"
action = "partition"
target = "owner:u1"
mode = "hang"
duration = "2s"
"""


@pytest.mark.parametrize("path", sorted(SCENARIOS.glob("*.toml")), ids=lambda p: p.name)
def test_shipped_scenarios_parse(path: Path) -> None:
    scenario = load_scenario(path)
    assert scenario.name == path.stem


def test_the_five_scenarios_are_shipped() -> None:
    names = {p.stem for p in SCENARIOS.glob("*.toml")}
    assert {"failover", "reconnect", "partition", "churn", "scale"} <= names


def test_durations_and_spans() -> None:
    assert parse_seconds("50ms") == pytest.approx(0.05)
    assert parse_seconds("2m") == 120.0
    assert parse_seconds(3) == 3.0
    assert parse_span("1ms..5ms") == Span(0.001, 0.005)
    with pytest.raises(ValueError, match="duration"):
        parse_seconds("soon")
    with pytest.raises(ValueError, match="low end"):
        parse_span("5ms..1ms")


def test_good_file_parses_into_attrs_classes() -> None:
    s = parse_scenario(GOOD)
    assert s.hub.alive == 2.0
    assert s.agents[0].stateless[0].uuid == "u1"
    assert s.agents[0].start_delay == Span(0.001, 0.005)
    assert s.faults == (FaultSpec(1.5, "partition", "owner:u1", 2.0, "hang"),)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (("count = 2", 'count = "two"'), "line 10: key 'agents[0].count'"),
        (('alive = "2s"', 'alive = "soon"'), "line 5: key 'hub.alive'"),
        (('mode = "hang"', 'mode = "hang"\nbogus = 1'), "line 24: key 'faults[0].bogus': unknown"),
        (('action = "partition"', 'action = "explode"'),
         "line 21: key 'faults[0].action': 'explode' is not one of"),
        (('name = "c"\n', ""), "key 'clients[0].name'"),
    ],
)
def test_bad_values_name_the_key_and_the_line(edit: tuple[str, str], expected: str) -> None:
    text = GOOD.replace(*edit)
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, "bad.toml")
    message = str(info.value)
    assert expected in message
    assert "Traceback" not in message
    assert message.startswith("bad.toml: ")


def test_syntax_errors_name_the_line() -> None:
    with pytest.raises(ScenarioError, match="line 2"):
        parse_scenario('name = "x"\nduration = \n')


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(tmp_path / "missing.toml")


def test_dump_round_trips() -> None:
    s = parse_scenario(GOOD)
    again = parse_scenario(dump_scenario(s))
    assert again == s
    explicit = parse_scenario(GOOD + '\n[[operations]]\nat = "3s"\nclient = "c"\nop = "get"\n')
    assert explicit.operations == (OperationSpec(3.0, "c", "get"),)  # type: ignore[arg-type]
    assert parse_scenario(dump_scenario(explicit)) == explicit


@pytest.mark.parametrize("name", ["restart-with-a-new-peer-id",
                                  "containers-exit-while-their-agent-lives"])
def test_dump_round_trips_fresh_peer_ids_and_container_exits(name: str) -> None:
    s = load_scenario(SCENARIOS.parent / "tests" / "sim" / "regressions" / f"{name}.toml")
    assert any(a.fresh_peer_id for a in s.agents) or any(
        f.action == "container-exit" for f in s.faults)
    assert parse_scenario(dump_scenario(s)) == s


def test_duplicate_process_names_are_refused() -> None:
    text = GOOD + '\n[[clients]]\nname = "a"\nkind = "echo"\ncount = 2\n'
    expected = r"line 27: key 'clients\[1\].name': process name 'a-1'"
    with pytest.raises(ScenarioError, match=expected):
        parse_scenario(text)
