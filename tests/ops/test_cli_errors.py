"""The CLI with real processes: bad input is one line and exit 2; signals end an agent.

Each bad input of the operations issue, run as ``python -m hulytrio``: what
it used to do (a traceback, a hang, a wrong port) is the failure.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # test_config, importlib mode

ROOT = Path(__file__).resolve().parents[2]
FACTORIES = "e2e_containers:FACTORIES"
#: the e2e containers module, importable by the agent (it runs in that directory)
E2E = ROOT / "tests" / "e2e"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("LOG_LEVEL", "NETWORK_PORT", "ALIVE_TIMEOUT", "AGENT_PORT", "LOG_FILE")}
    return {**env, "PYTHONPATH": str(ROOT), **extra}


def run(*args: str, timeout: float = 20, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hulytrio", *args], capture_output=True,
                          text=True, timeout=timeout, env=_env(**env), cwd=str(E2E),
                          check=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(("args", "env", "says"), [
    (("serve", "--port", "99999"), {},
     "--port=99999 is not allowed: expected a port number 0..65535"),
    (("serve", "--alive-timeout", "0"), {}, "--alive-timeout=0 is not allowed"),
    (("serve",), {"ALIVE_TIMEOUT": "abc"}, "ALIVE_TIMEOUT=abc is not allowed"),
    (("serve",), {"LOG_LEVEL": "verbose"}, "LOG_LEVEL=verbose is not allowed"),
    (("serve",), {"HUB_SUPERVISE": "perhaps"}, "HUB_SUPERVISE=perhaps is not allowed"),
    (("serve", "--config", "/nonexistent/production.json"), {}, "cannot read it"),
    (("agent", "--factories", FACTORIES, "--endpoint", "localhost:abc"), {},
     "--endpoint=localhost:abc is not allowed: expected HOST:PORT"),
    (("agent", "--factories", FACTORIES), {"AGENT_PORT": "abc"}, "AGENT_PORT=abc is not allowed"),
    (("agent", "--factories", FACTORIES, "--url", "notaurl"), {},
     "--url=notaurl is not allowed: expected a ws://HOST:PORT URL"),
    (("agent", "--factories", FACTORIES, "--memory-limit", "1M"), {},
     "--memory-limit=1M is not allowed: expected at least 32M"),
    (("agent", "--factories", FACTORIES), {"MAX_CONTAINERS": "many"},
     "MAX_CONTAINERS=many is not allowed"),
    (("agent", "--factories", "no_such_module:F"), {}, "--factories no_such_module:F"),
    (("agent", "--factories", FACTORIES, "--state", "redis://x"), {},
     "--state=redis://x is not allowed: expected sqlite:PATH or postgresql://"),
    (("agent", "--factories", FACTORIES), {"STATE_STORE": "state.db"},
     "STATE_STORE=state.db is not allowed: expected sqlite:PATH"),
    (("agent", "--factories", FACTORIES, "--checkpoint-interval", "0"), {},
     "--checkpoint-interval=0 is not allowed: expected a number of seconds > 0"),
    (("agent", "--factories", FACTORIES, "--fence-lease", "0"), {},
     "--fence-lease=0 is not allowed: expected a number of seconds > 0"),
    (("agent", "--factories", FACTORIES), {"FENCE_LEASE": "soon"},
     "FENCE_LEASE=soon is not allowed: expected a number of seconds > 0"),
    (("agent", "--factories", FACTORIES, "--url", "ws://127.0.0.1:9",
      "--state", "sqlite:/nonexistent/dir/state.db"), {},
     "--state: state store sqlite:/nonexistent/dir/state.db: unable to open database file"),
    (("config", "--print"), {"NETWORK_PORT": "-1"}, "NETWORK_PORT=-1 is not allowed"),
])
def test_bad_input_is_one_line_and_exit_2(args, env, says):
    done = run(*args, **env)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert says in done.stderr
    assert done.stderr.startswith(f"hulytrio {args[0]}: error: ")


def test_a_busy_port_is_one_line_and_exit_2():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        hub = run("serve", "--host", "127.0.0.1", "--port", str(port))
        assert hub.returncode == 2
        assert hub.stderr.strip().endswith("Address already in use"), hub.stderr
        assert hub.stderr.count("\n") == 1
        # the agent's own endpoint on a busy port (the hub it dials is down:
        # the endpoint is bound before the agent registers)
        agent = run("agent", "--factories", FACTORIES, "--url", f"ws://127.0.0.1:{free_port()}",
                    "--endpoint", f"127.0.0.1:{port}", "--log-level", "error")
        assert agent.returncode == 2, agent.stderr
        assert agent.stderr == (f"hulytrio agent: error: cannot listen on the agent endpoint "
                                f"127.0.0.1:{port}: Address already in use\n")


def test_config_print_shows_values_and_their_origin(tmp_path):
    path = tmp_path / "production.json"
    path.write_text(json.dumps({"network": {"port": 3737, "containerTimeout": 60},
                                "agent": {"memoryLimit": "512M"}}))
    done = run("config", "--config", str(path), "--print", MAX_CONTAINERS="3", PING_INTERVAL="")
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line.split(None, 2)[1:] for line in done.stdout.splitlines()}
    assert rows["network.port"] == ["3737", f"file {path}"]
    assert rows["network.containerTimeout"] == ["60.0", f"file {path}"]
    assert rows["agent.maxContainers"] == ["3", "env MAX_CONTAINERS"]
    assert rows["agent.memoryLimit"][1].endswith(f"file {path}")
    assert rows["network.pingInterval"] == ["1.0", "default"]
    as_json = run("config", "--config", str(path), "--json")
    assert json.loads(as_json.stdout)["network"]["containerTimeout"] == 60.0


def _start_agent(*args: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "hulytrio", "agent", "--factories", FACTORIES,
                             *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=_env(**env), cwd=str(E2E))


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_an_agent_whose_hub_is_down_says_so_and_ends_on_a_signal(signum):
    url = f"ws://127.0.0.1:{free_port()}"  # nobody listens
    proc = _start_agent("--url", url, "--log-format", "json", "--log-file", "stdout",
                        "--memory-limit", "1G")
    try:
        line = proc.stdout.readline()  # the first failed attempt is said at once
        record = json.loads(line)
        assert record["service"] == "agent"
        assert record["level"] == "WARNING"
        assert f"cannot connect to the hub at {url}" in record["message"]
        limits = Path(f"/proc/{proc.pid}/limits").read_text()
        data = next(row for row in limits.splitlines() if row.startswith("Max data size"))
        assert data.split()[3] == str(1024**3)
        time.sleep(1.0)  # ~10 more attempts: none of them logged
        started = time.monotonic()
        proc.send_signal(signum)
        rest, _ = proc.communicate(timeout=10)
        took = time.monotonic() - started
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, rest
    assert took < 5
    assert rest.count("cannot connect") <= 1  # ~12 attempts meanwhile, not one line each
    assert "Traceback" not in rest


def test_the_seed_sample_config_runs_a_hub(tmp_path):
    from test_config import SEED

    path = tmp_path / "production.json"
    path.write_text(json.dumps(SEED))
    # Only the address differs from the sample: tests listen on loopback only.
    # The sample enables monitoring on 9090; a free port stands in for it here.
    hub = subprocess.Popen([sys.executable, "-m", "hulytrio", "serve", "--config", str(path),
                            "--host", "127.0.0.1", "--port", "0", "--metrics-port", "0"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env=_env(TICK_RATE="1000"))
    try:
        lines = []
        while not lines or "/metrics" not in lines[-1]["message"]:
            lines.append(json.loads(hub.stdout.readline()))
        hub.send_signal(signal.SIGTERM)
        rest, errors = hub.communicate(timeout=10)
    finally:
        hub.kill()
        hub.wait()
    assert hub.returncode == 0, errors
    assert errors == ""
    assert {line["service"] for line in lines} == {"hub"}
    said = " ".join(line["message"] for line in lines)
    assert "TICK_RATE=1000 has no effect" in said
    assert "monitoring.tracingEnabled has no effect" in said
    assert "metrics on http://127.0.0.1:" in said
    assert "container timeout 60 s" in said + rest
