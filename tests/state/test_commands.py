"""``hulytrio state``: backup and recovery from a shell, as an operator runs it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import trio

from hulytrio.state import open_state_store


def hulytrio(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hulytrio", "state", *args],
                          capture_output=True, text=True, timeout=60, env=env)


@pytest.fixture
def store(tmp_path):
    url = f"sqlite:{tmp_path}/state.db"

    async def fill() -> None:
        async with open_state_store(url) as s:
            await s.put("counter-1", b"\x81\xa1n\x05", 3)
            await s.put("counter-2", b"two", 1)
    trio.run(fill)
    return url


def test_list_as_a_table_and_as_json(store):
    table = hulytrio("list", "--state", store)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["UUID", "EPOCH", "BYTES", "WRITTEN"]
    assert [line.split()[:3] for line in lines[1:]] == [["counter-1", "3", "4"],
                                                         ["counter-2", "1", "3"]]
    listed = json.loads(hulytrio("list", "--state", store, "--json").stdout)
    assert [(r["uuid"], r["epoch"], r["size"]) for r in listed] == [
        ("counter-1", 3, 4), ("counter-2", 1, 3)]


def test_export_then_import_restores_the_bytes(store, tmp_path):
    backup = tmp_path / "c1.json"
    out = hulytrio("export", "counter-1", "-o", str(backup), "--state", store)
    assert out.returncode == 0, out.stderr
    assert "exported counter-1 (epoch 3, 4 bytes)" in out.stdout
    assert hulytrio("delete", "counter-1", "--state", store).returncode == 0
    restored = hulytrio("import", "counter-1", str(backup), "--state", store, "--json")
    assert restored.returncode == 0, restored.stderr
    assert json.loads(restored.stdout)["epoch"] == 3

    async def check() -> None:
        async with open_state_store(store) as s:
            got = await s.get("counter-1")
            assert got is not None
            assert (got.state, got.epoch) == (b"\x81\xa1n\x05", 3)
    trio.run(check)


def test_import_over_a_newer_owner_takes_the_stored_epoch(store, tmp_path):
    backup = tmp_path / "c2.json"
    assert hulytrio("export", "counter-2", "-o", str(backup), "--state", store).returncode == 0

    async def newer_owner() -> None:
        async with open_state_store(store) as s:
            await s.put("counter-2", b"later", 7)
    trio.run(newer_owner)
    restored = hulytrio("import", "counter-2", str(backup), "--state", store)
    assert restored.returncode == 0, restored.stderr
    assert "at epoch 7" in restored.stdout


def test_a_uuid_claimed_with_nothing_saved_has_no_state_to_show(store, tmp_path):
    """A claim leaves a row holding only the owner's epoch: not a state."""
    backup = tmp_path / "c2.json"
    assert hulytrio("export", "counter-2", "-o", str(backup), "--state", store).returncode == 0

    async def claim() -> None:
        async with open_state_store(store) as s:
            await s.claim("claimed-1", 5)
    trio.run(claim)
    listed = json.loads(hulytrio("list", "--state", store, "--json").stdout)
    assert [r["uuid"] for r in listed] == ["counter-1", "counter-2"]
    out = hulytrio("export", "claimed-1", "--state", store)
    assert (out.returncode, out.stderr) == (1, "hulytrio state: no stored state for claimed-1\n")
    # a restore onto it is written at the claim's epoch (the file's, 1, is older)
    restored = hulytrio("import", "claimed-1", str(backup), "--state", store)
    assert restored.returncode == 0, restored.stderr
    assert "into claimed-1 (backed up as counter-2) at epoch 5" in restored.stdout

    async def check() -> None:
        async with open_state_store(store) as s:
            got = await s.get("claimed-1")
            assert got is not None
            assert (got.state, got.epoch) == (b"two", 5)
    trio.run(check)


def test_export_to_stdout_is_the_backup_file(store):
    out = hulytrio("export", "counter-2", "--state", store)
    backup = json.loads(out.stdout)
    assert backup["format"] == "hulytrio-state/1"
    assert backup["uuid"] == "counter-2"
    assert backup["state"] == "dHdv"


@pytest.mark.parametrize(("args", "code", "says"), [
    (["list"], 2, "no state store: give --state URL or set STATE_STORE"),
    (["list", "--state", "redis://x"], 2, "'redis://x': unknown kind"),
    (["export", "nobody", "--state", "{store}"], 1, "no stored state for nobody"),
    (["delete", "nobody", "--state", "{store}"], 1, "no stored state for nobody"),
    (["import", "x", "/no/such/file", "--state", "{store}"], 2, "/no/such/file: No such file"),
    (["import", "x", "{notjson}", "--state", "{store}"], 2, "not a backup file (not JSON"),
    (["import", "x", "{empty}", "--state", "{store}"], 2,
     "the state in it is empty (0 bytes); the store refuses an empty state"),
    (["export", "counter-1", "-o", "/no/such/dir/f", "--state", "{store}"], 2,
     "--output /no/such/dir/f: No such file"),
])
def test_bad_input_is_one_line_and_an_exit_code(store, tmp_path, args, code, says):
    notjson = tmp_path / "notjson"
    notjson.write_text("hello")
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"format": "hulytrio-state/1", "uuid": "x", "epoch": 0,
                                 "written_at": 0.0, "state": ""}))
    args = [a.format(store=store, notjson=notjson, empty=empty) for a in args]
    out = hulytrio(*args, env={"PATH": "/usr/bin:/bin"})
    assert out.returncode == code
    assert out.stderr.count("\n") == 1, out.stderr
    assert says in out.stderr


def test_the_store_comes_from_the_environment(store):
    import os
    out = hulytrio("list", "--json", env={**os.environ, "STATE_STORE": store})
    assert out.returncode == 0
    assert len(json.loads(out.stdout)) == 2
