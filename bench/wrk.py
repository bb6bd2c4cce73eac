"""One wrk run of `python -m bench.http`: its settings in, its `BENCH ...` lines out.

The scripts in bench/lua/ stop sending after `seconds`, and each thread prints IDLE and
stops once its last answer is in; wrk itself would only stop at `-d` and cut off the
requests in flight, so it is started with a long `-d` and stopped (SIGINT: it prints its
results as at the end) when every thread is idle.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LUA = Path(__file__).resolve().parent / "lua"
WRK = os.environ.get("BENCH_WRK", "wrk")
# Past this, a thread still waiting for an answer is a failure (a request never answered).
DRAIN_SECONDS = 60
IDLE = re.compile(r"\bIDLE \d+\b")


@dataclass
class Result:
    rate: float = 0.0  # requests/s over the window, summed over the connections
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    answers: int = 0
    stored: int = 0  # reports the answers say were stored
    unexpected: int = 0  # answers other than the one expected
    errors: tuple[int, ...] = (0, 0, 0, 0)  # connect, read, write, timeout
    statuses: dict[int, int] = field(default_factory=dict)
    sample: str = ""
    problems: list[str] = field(default_factory=list)


def to_lua(value: Any) -> str:
    """A Lua literal for config values (ASCII strings: JSON's escapes are Lua's)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "nil"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=True)
    if isinstance(value, list | tuple):
        return "{" + ", ".join(to_lua(v) for v in value) + "}"
    return "{" + ", ".join(f"{k} = {to_lua(v)}" for k, v in value.items()) + "}"


def command(script: str, connections: int, seconds: float, url: str) -> list[str]:
    # One thread per connection: the scripts rely on a thread's requests being sequential.
    return [
        WRK,
        f"-t{connections}",
        f"-c{connections}",
        f"-d{int(seconds) + DRAIN_SECONDS}s",
        "--timeout",
        f"{DRAIN_SECONDS}s",
        "--latency",
        "-s",
        str(LUA / f"{script}.lua"),
        url,
    ]


def run(
    script: str, connections: int, url: str, settings: dict[str, Any], config_path: Path
) -> Result:
    """Drive `url` for settings["seconds"] with `connections` connections. wrk's output is
    added to the file next to `config_path` named *.wrk.txt."""
    config_path.write_text("return " + to_lua(settings) + "\n")
    env = {**os.environ, "BENCH_WRK_CONFIG": str(config_path), "BENCH_LUA_DIR": str(LUA)}
    argv = command(script, connections, settings["seconds"], url)
    lines: list[str] = []
    idle = 0
    process = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
            idle += len(IDLE.findall(line))
            if idle == connections and process.poll() is None:
                process.send_signal(signal.SIGINT)
        process.wait()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    with config_path.with_suffix(".wrk.txt").open("a") as transcript:
        transcript.write(" ".join(argv) + "\n" + "\n".join(lines) + "\n\n")
    result = parse(lines)
    if process.returncode != 0:
        result.problems.append(f"wrk exited {process.returncode}: {' '.join(lines[-5:])}")
    if idle < connections:
        result.problems.append(
            f"{connections - idle} of {connections} connections still waited for an answer "
            f"after {DRAIN_SECONDS} s"
        )
    if not result.answers:
        result.problems.append("no answers at all: " + " | ".join(lines[-8:]))
    if any(result.errors):
        connect, read, write, timeout = result.errors
        result.problems.append(
            f"socket errors: connect {connect}, read {read}, write {write}, timeout {timeout}"
        )
    return result


def parse(lines: list[str]) -> Result:
    result = Result()
    for line in lines:
        if not line.startswith("BENCH "):
            continue
        _, key, rest = line.split(" ", 2)
        if key == "sample":
            result.sample = rest
        elif key == "status":
            status, count = rest.split()
            result.statuses[int(status)] = int(count)
        elif key == "errors":
            result.errors = tuple(int(n) for n in rest.split())
        elif key in ("rate", "p50_ms", "p99_ms"):
            setattr(result, key, float(rest))
        else:
            setattr(result, key, int(rest))
    return result
