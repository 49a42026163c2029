"""The benchmark scenarios and how each one runs its processes.

Every scenario starts a fresh hub (``python -m hulytrio serve``) on a free
loopback port, plus what it needs: an echo agent (``python -m hulytrio
agent``), and load processes (``python -m benchmarks.harness.worker``) driven
over their stdin.  It returns a ``Result``: named metrics plus the CPU
seconds and peak memory of every process.  Whatever happens, every process
is killed before ``run`` returns or raises.

Kinds of scenario:

- ``echo``: clients keep ``inflight`` echo requests each going, through the
  hub or straight to the agent's endpoint; requests/s and latency
  percentiles over the measured window (after a warm-up), and the CPU
  seconds each process spent in that window.
- ``coldget``: one client gets new containers one after another.
- ``fanout``: 1,000 connected clients, one registry change (an agent
  registers); how long until the last client has the event.
- ``connect``: 1,000 clients connect at once; how long until all are welcomed,
  and the hub's memory per connected client.
- ``memory``: the hub's memory per connected client and per idle agent.
- ``failover``: standby serving after an agent is killed, hung or closed,
  and an existing reference usable again after the hub is killed and
  restarted (cold, and under ``--supervise``); ``benchmarks.harness.failover``.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import attrs

from .procs import BenchError, Proc, Processes, free_port, wait_for_port
from .profile import start_profilers
from .stats import Histogram, ProcSample

__all__ = ["QUICK", "SCENARIOS", "Result", "Scenario", "run"]

#: How the hub and agent are started: ``python -m <CLI_MODULE> serve|agent``.
#: ``HULYTRIO_BENCH_CLI=hulytrio.transport.commands`` runs them without the rest
#: of the command line (when another sub-command cannot be imported).
CLI_MODULE = os.environ.get("HULYTRIO_BENCH_CLI", "hulytrio")

#: Seconds a process may take to answer a setup command.
SETUP_TIMEOUT = 120.0


@attrs.frozen
class Scenario:
    """What one scenario runs (see module docstring for the kinds)."""

    name: str
    kind: str
    description: str
    path: str = "hub"
    inflight: int = 1
    clients: int = 1
    payload: int = 100
    #: load processes the clients are spread over
    procs: int = 1
    #: containers (coldget), clients (fanout, connect, memory)
    count: int = 0
    #: repetitions (fanout rounds)
    rounds: int = 1


@attrs.define
class Result:
    """What a scenario measured: ``metrics`` by name, and per-process usage."""

    scenario: Scenario
    metrics: dict[str, float | int | str] = attrs.Factory(dict)
    #: process name -> {"cpu_s": ..., "peak_rss_mb": ...}
    processes: dict[str, dict[str, float]] = attrs.Factory(dict)
    #: py-spy raw profiles written (``--profile``)
    profiles: list[str] = attrs.Factory(list)

    def to_json(self) -> dict[str, Any]:
        """Return the JSON-able form printed on the scenario's JSON line."""
        return {"scenario": self.scenario.name, "kind": self.scenario.kind,
                "params": attrs.asdict(self.scenario, filter=lambda a, _: a.name not in
                                       ("name", "kind", "description")),
                "metrics": self.metrics, "processes": self.processes}


def _echo_scenarios() -> dict[str, Scenario]:
    out: dict[str, Scenario] = {}
    for path in ("hub", "direct"):
        via = "through the hub" if path == "hub" else "direct to the agent's endpoint"
        for inflight in (1, 16, 64, 256):
            name = f"{path}-{inflight}"
            out[name] = Scenario(name, "echo", f"echo 100 B {via}, {inflight} in flight",
                                 path=path, inflight=inflight)
            name = f"{path}-{inflight}-x8"
            out[name] = Scenario(name, "echo",
                                 f"echo 100 B {via}, 8 clients x {inflight} in flight",
                                 path=path, inflight=inflight, clients=8, procs=2)
        for inflight in (1, 16):
            # 200 B and 64 KiB: the framing A/B of issue 13 (docs/performance.md)
            for label, size, text in (("200b", 200, "200 B"), ("10k", 10_000, "10 KB"),
                                      ("64k", 65_536, "64 KiB"), ("1m", 1_000_000, "1 MB")):
                name = f"{path}-{inflight}-{label}"
                out[name] = Scenario(name, "echo",
                                     f"echo {text} {via}, {inflight} in flight",
                                     path=path, inflight=inflight, payload=size)
    return out


SCENARIOS: dict[str, Scenario] = {
    **_echo_scenarios(),
    "raw-ws-1": Scenario("raw-ws-1", "rawws", "yardstick: plain trio-websocket echo, "
                         "one message per frame, 1 in flight (no hulytrio code)"),
    "raw-ws-16": Scenario("raw-ws-16", "rawws", "yardstick: plain trio-websocket echo, "
                          "one message per frame, 16 in flight", inflight=16),
    "cold-get": Scenario("cold-get", "coldget",
                         "latency of get() of a new container, one after another", count=200),
    "fanout-1000": Scenario("fanout-1000", "fanout",
                            "one registry change to 1,000 connected clients: "
                            "time until the last has it", count=1000, procs=4, rounds=5),
    "connect-1000": Scenario("connect-1000", "connect",
                             "1,000 clients connect at once: time until all are welcomed",
                             count=1000, procs=4),
    "memory": Scenario("memory", "memory",
                       "hub memory per connected client and per idle agent (1,000 each)",
                       count=1000, procs=4),
    "failover": Scenario("failover", "failover",
                         "agent SIGKILL / SIGSTOP / SIGTERM -> standby serving; hub "
                         "restart (cold, supervised) -> existing reference usable (ms)",
                         rounds=5),
}

#: The default set (``python -m benchmarks.harness`` with no ``--scenario``): the issue's
#: table, a few variants, and one of each other kind; a few minutes in all.
QUICK: tuple[str, ...] = (
    "raw-ws-1", "raw-ws-16", "hub-1", "hub-16", "hub-64", "direct-1", "direct-16", "direct-64",
    "hub-16-x8", "hub-16-10k", "hub-1-1m",
    "cold-get", "fanout-1000", "connect-1000", "memory",
)


# --- process helpers ------------------------------------------------------------------


def _start_hub(ps: Processes, *flags: str) -> tuple[Proc, str]:
    port = free_port()
    hub = ps.python("hub", "-m", CLI_MODULE, "serve", "--host", "127.0.0.1",
                    "--port", str(port), "--log-level", "warning", *flags)
    wait_for_port(hub, port)
    return hub, f"ws://127.0.0.1:{port}"


def _start_agent(ps: Processes, url: str) -> Proc:
    port = free_port()
    agent = ps.python("agent", "-m", CLI_MODULE, "agent", "--url", url,
                      "--factories", "hulytrio.testing.echo:FACTORIES",
                      "--agent-id", "bench-echo", "--endpoint", f"127.0.0.1:{port}",
                      "--log-level", "warning")
    wait_for_port(agent, port)
    return agent


def _start_workers(ps: Processes, url: str, n: int, prefix: str = "client") -> list[Proc]:
    workers = [ps.python(f"{prefix}{i}" if n > 1 else prefix, "-m", "benchmarks.harness.worker",
                         "--url", url, pipe=True) for i in range(n)]
    for w in workers:
        w.read(SETUP_TIMEOUT)
    return workers


def _all(workers: list[Proc], command: dict[str, Any] | Callable[[int], dict[str, Any]],
         timeout: float = SETUP_TIMEOUT) -> list[dict[str, Any]]:
    """Send a command to every worker at once, then return their replies in order."""
    for i, w in enumerate(workers):
        w.send(command(i) if callable(command) else command)
    return [w.read(timeout) for w in workers]


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def _sleep_until(t: float) -> None:
    left = t - time.monotonic()
    if left > 0:
        time.sleep(left)


def _usage(ps: Processes, before: dict[str, ProcSample | None] | None = None
           ) -> dict[str, dict[str, float]]:
    """Return CPU seconds (since ``before``, if given) and peak RSS per process."""
    out: dict[str, dict[str, float]] = {}
    for proc in ps.procs:
        now = proc.sample() or proc.last_sample
        if now is None:
            continue
        start = before.get(proc.name) if before else None
        cpu = now.cpu_s - (start.cpu_s if start is not None else 0.0)
        out[proc.name] = {"cpu_s": round(cpu, 3),
                          "peak_rss_mb": round(now.peak_rss_bytes / 2**20, 1)}
    return out


def _cpu_per_request(processes: dict[str, dict[str, float]], requests: int
                     ) -> dict[str, float | int | str]:
    """Return the CPU microseconds each role spent per request in the measured window.

    Unlike req/s this hardly depends on what else the machine is doing, so it
    is the figure to compare two versions by on a busy machine.
    """
    roles: dict[str, float] = {}
    for name, usage in processes.items():
        role = name if name in ("hub", "agent", "server") else "clients"
        roles[role] = roles.get(role, 0.0) + usage["cpu_s"]
    return {f"{role}_cpu_us_per_req": round(cpu / max(requests, 1) * 1e6, 1)
            for role, cpu in roles.items()}


def _latency_metrics(hist: Histogram, prefix: str = "") -> dict[str, float | int | str]:
    return {
        f"{prefix}p50_ms": round(hist.percentile(0.50) * 1e3, 3),
        f"{prefix}p95_ms": round(hist.percentile(0.95) * 1e3, 3),
        f"{prefix}p99_ms": round(hist.percentile(0.99) * 1e3, 3),
        f"{prefix}max_ms": round(hist.max * 1e3, 3),
    }


def _rss(proc: Proc) -> int:
    s = proc.sample()
    if s is None:
        raise proc._failure("exited")
    return s.rss_bytes


# --- scenarios --------------------------------------------------------------------------


def _run_echo(sc: Scenario, warmup: float, duration: float, profile: str | None) -> Result:
    result = Result(sc)
    with Processes() as ps:
        _, url = _start_hub(ps)
        _start_agent(ps, url)
        workers = _start_workers(ps, url, sc.procs)
        shares = _split(sc.clients, sc.procs)
        start = time.monotonic() + 0.05
        _all(workers, lambda i: {"cmd": "connect", "clients": shares[i], "start": start})
        paths = [p for r in _all(workers, {"cmd": "prepare", "path": sc.path})
                 for p in r["paths"]]
        if any(p != sc.path for p in paths):
            raise BenchError(f"{sc.name}: asked for the {sc.path} path, got {paths}")
        start = time.monotonic() + 0.1
        command = {"cmd": "echo", "inflight": sc.inflight, "payload": sc.payload,
                   "start": start, "warmup": warmup, "duration": duration}
        for w in workers:
            w.send(command)
        _sleep_until(start + warmup)
        before = ps.sample_all()
        recorders = (start_profilers(ps.procs, duration, profile, sc.name)
                     if profile is not None else [])
        _sleep_until(start + warmup + duration)
        result.processes = _usage(ps, before)
        replies = [w.read(SETUP_TIMEOUT) for w in workers]
        for path, recorder in recorders:
            try:
                recorder.wait(30)
            except subprocess.TimeoutExpired:
                recorder.kill()
                recorder.wait()
            result.profiles.append(path)
    hist = Histogram()
    errors = wrong = 0
    for reply in replies:
        hist.merge(Histogram.from_json(reply["hist"]))
        errors += int(reply["errors"])
        wrong += int(reply["wrong"])
    result.metrics = {"requests": hist.count, "req_per_s": round(hist.count / duration, 1),
                      **_latency_metrics(hist), "errors": errors, "wrong": wrong,
                      **_cpu_per_request(result.processes, hist.count)}
    return result


def _run_coldget(sc: Scenario, warmup: float, duration: float, profile: str | None
             ) -> Result:
    result = Result(sc)
    with Processes() as ps:
        _, url = _start_hub(ps)
        _start_agent(ps, url)
        workers = _start_workers(ps, url, 1)
        _all(workers, {"cmd": "connect", "clients": 1, "start": time.monotonic()})
        before = ps.sample_all()
        reply = _all(workers, {"cmd": "coldget", "count": sc.count, "warm": 20})[0]
        result.processes = _usage(ps, before)
    hist = Histogram.from_json(reply["hist"])
    result.metrics = {"gets": hist.count, **_latency_metrics(hist),
                      "mean_ms": round(hist.total / max(hist.count, 1) * 1e3, 3)}
    return result


def _connect_crowd(ps: Processes, url: str, sc: Scenario
                   ) -> tuple[list[Proc], list[float], int]:
    """Connect ``sc.count`` clients over ``sc.procs`` new workers, all at once.

    Returns the workers, each client's seconds to its welcome, and the
    workers' summed RSS before they connected anything.
    """
    workers = _start_workers(ps, url, sc.procs)
    idle_rss = sum(_rss(w) for w in workers)
    start = time.monotonic() + 0.1
    shares = _split(sc.count, sc.procs)
    replies = _all(workers, lambda i: {"cmd": "connect", "clients": shares[i], "start": start})
    times = [t for r in replies for t in r["times"]]
    return workers, times, idle_rss


def _run_connect(sc: Scenario, warmup: float, duration: float, profile: str | None
             ) -> Result:
    result = Result(sc)
    with Processes() as ps:
        hub, url = _start_hub(ps)
        # One client first, so the baseline includes the hub's first-connection costs.
        warm = _start_workers(ps, url, 1, prefix="warm")
        _all(warm, {"cmd": "connect", "clients": 1, "start": time.monotonic()})
        base = _rss(hub)
        before = ps.sample_all()
        _, times, _ = _connect_crowd(ps, url, sc)
        time.sleep(0.5)
        after = _rss(hub)
        result.processes = _usage(ps, before)
    hist = Histogram()
    for t in times:
        hist.add(t)
    result.metrics = {"clients": len(times), "all_welcomed_s": round(max(times), 3),
                      "connects_per_s": round(len(times) / max(times), 1),
                      **_latency_metrics(hist, "connect_"),
                      "hub_bytes_per_client": round((after - base) / len(times))}
    return result


def _run_fanout(sc: Scenario, warmup: float, duration: float, profile: str | None
             ) -> Result:
    result = Result(sc)
    markers = [f"fanout-marker-{i}" for i in range(sc.rounds)]
    with Processes() as ps:
        _, url = _start_hub(ps)
        trigger = _start_workers(ps, url, 1, prefix="trigger")
        _all(trigger, {"cmd": "connect", "clients": 1, "start": time.monotonic()})
        workers, _, _ = _connect_crowd(ps, url, sc)
        _all(workers, {"cmd": "listen", "markers": markers})
        before = ps.sample_all()
        starts = []
        for marker in markers:
            time.sleep(0.3)  # let the previous round's event settle everywhere
            starts.append(_all(trigger, {"cmd": "trigger", "agent_id": marker})[0]["t0"])
        replies = _all(workers, {"cmd": "collect", "timeout": 10.0})
        result.processes = _usage(ps, before)
    lasts: list[float] = []
    medians: list[float] = []
    missing = 0
    for r, t0 in enumerate(starts):
        seen = [t for reply in replies for t in reply["seen"][r]]
        got = [t - t0 for t in seen if t is not None]
        missing += len(seen) - len(got)
        if got:
            lasts.append(max(got))
            medians.append(statistics.median(got))
    result.metrics = {
        "clients": sc.count, "rounds": sc.rounds, "missing": missing,
        "last_ms_median": round(statistics.median(lasts) * 1e3, 1) if lasts else "n/a",
        "last_ms_max": round(max(lasts) * 1e3, 1) if lasts else "n/a",
        "median_client_ms": round(statistics.median(medians) * 1e3, 1) if medians else "n/a",
    }
    return result


def _run_memory(sc: Scenario, warmup: float, duration: float, profile: str | None
             ) -> Result:
    # Two fresh hubs: every client receives every registry event and a
    # snapshot on welcome, so 1,000 clients watching 1,000 agents register
    # would measure that fan-out (N x N records), not memory.
    result = Result(sc)
    with Processes() as ps:
        hub, url = _start_hub(ps)
        warm = _start_workers(ps, url, 1, prefix="warm")
        _all(warm, {"cmd": "connect", "clients": 10, "start": time.monotonic()})
        time.sleep(0.3)
        base = _rss(hub)
        workers, times, idle_rss = _connect_crowd(ps, url, sc)
        time.sleep(0.5)
        clients = _rss(hub)
        worker_rss = sum(_rss(w) for w in workers) - idle_rss
        result.processes = {f"clients-{k}": v for k, v in _usage(ps).items()}
    hosts = 10
    per_host = max(1, sc.count // hosts)
    with Processes() as ps:
        # each host client registers per_host + 1 agents (limits.maxRegistrations)
        hub, url = _start_hub(ps, "--max-registrations", str(per_host + 1))
        workers = _start_workers(ps, url, 1, prefix="host")
        _all(workers, {"cmd": "connect", "clients": hosts, "start": time.monotonic()})
        _all(workers, {"cmd": "agents", "kind": "idle"})
        time.sleep(0.3)
        base_agents = _rss(hub)
        host_base = _rss(workers[0])
        _all(workers, {"cmd": "agents", "kind": "idle", "per_client": per_host})
        time.sleep(0.5)
        agents = _rss(hub)
        host_rss = _rss(workers[0])
        result.processes.update({f"agents-{k}": v for k, v in _usage(ps).items()})
    n, m = len(times), hosts * per_host
    result.metrics = {"clients": n, "idle_agents": m,
                      "hub_bytes_per_client": round((clients - base) / n),
                      "hub_bytes_per_idle_agent": round((agents - base_agents) / m),
                      "client_process_bytes_per_client": round(worker_rss / n),
                      "host_process_bytes_per_idle_agent": round((host_rss - host_base) / m)}
    return result


def _run_rawws(sc: Scenario, warmup: float, duration: float, profile: str | None
              ) -> Result:
    if importlib.util.find_spec("trio_websocket") is None:
        raise BenchError("the raw-ws yardstick needs trio-websocket, which hulytrio itself "
                         "no longer uses: pip install 'hulytrio[test]'")
    result = Result(sc)
    with Processes() as ps:
        port = free_port()
        server = ps.python("server", "-m", "benchmarks.harness.rawws", "serve", str(port))
        wait_for_port(server, port)
        start = time.monotonic() + 0.5
        load = ps.python("client", "-m", "benchmarks.harness.rawws", "load", str(port),
                         str(sc.inflight), str(sc.payload), str(start), str(warmup),
                         str(duration), pipe=True)
        _sleep_until(start + warmup)
        before = ps.sample_all()
        _sleep_until(start + warmup + duration)
        result.processes = _usage(ps, before)
        reply = load.read(SETUP_TIMEOUT)
    hist = Histogram.from_json(reply["hist"])
    result.metrics = {"requests": hist.count, "req_per_s": round(hist.count / duration, 1),
                      **_latency_metrics(hist), "errors": 0, "wrong": 0,
                      **_cpu_per_request(result.processes, hist.count)}
    return result


def _run_failover(sc: Scenario, warmup: float, duration: float, profile: str | None
                  ) -> Result:
    import trio

    from . import failover

    rows = trio.run(functools.partial(failover.measure, sc.rounds, 3.0,
                                      list(failover.SCENARIOS), show=False))
    result = Result(sc)
    for row in rows:
        result.metrics[f"{row['key']}_median_ms"] = row["median_ms"]  # type: ignore[assignment]
        result.metrics[f"{row['key']}_worst_ms"] = row["worst_ms"]  # type: ignore[assignment]
    return result


_RUNNERS: dict[str, Callable[[Scenario, float, float, str | None], Result]] = {
    "echo": _run_echo, "rawws": _run_rawws, "coldget": _run_coldget, "fanout": _run_fanout,
    "connect": _run_connect, "memory": _run_memory, "failover": _run_failover,
}


def run(scenario: Scenario, *, warmup: float, duration: float, profile: str | None = None
        ) -> Result:
    """Run ``scenario`` (warm-up and measured seconds for the echo kind); returns its Result.

    With ``profile`` (a directory), every process of an echo scenario is
    recorded by py-spy during the measured window; ``Result.profiles`` lists
    the files.

    Raises:
        BenchError: if a process failed, did not answer in time, or a request
            took the wrong path; every process is killed first.
    """
    if sys.platform != "linux":
        raise BenchError("the harness reads /proc: it runs on Linux only")
    load_1m = os.getloadavg()[0]
    result = _RUNNERS[scenario.kind](scenario, warmup, duration, profile)
    # Other work on the machine skews every figure: say how busy it was.
    result.metrics["load_1m_before"] = round(load_1m, 2)
    return result
