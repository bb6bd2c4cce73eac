"""`needs-tracker serve` starts a part again when it stops (a worker that died of a full
disk, a crash), saying so each time; a part that cannot start at all stops serve.

The supervisor is the real one (service/serve.py's `supervise`, in a process of its
own, as `serve` runs it), over stand-in parts so the test takes seconds, with its
pauses shortened.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.backends import on_services

# The supervisor is the same whatever the backend: it runs on the embedded pass only.
pytestmark = pytest.mark.skipif(on_services(), reason="backend-independent: embedded pass")

SUPERVISOR = """
import sys
from service import serve
serve.RESTART_PAUSES = (0.1,)
python = sys.executable
parts = {"web": [python, "-c", "import time; time.sleep(120)"]}
if sys.argv[1] == "broken":
    parts["beat"] = [python, "-c", "raise SystemExit(2)"]
else:
    serve.FIRST_START_SECONDS = 0.3
    parts["worker"] = [python, "-c", "import time; time.sleep(0.6); raise SystemExit(3)"]
sys.exit(serve.supervise(parts, {}))
"""


def _supervise(how: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("w") as out:  # the child keeps its own copy of the file
        return subprocess.Popen(
            [sys.executable, "-c", SUPERVISOR, how],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parents[2],
        )


def test_a_part_that_stops_is_started_again_and_said_so(tmp_path: Path):
    log = tmp_path / "serve.log"
    serve = _supervise("running", log)
    try:
        deadline = time.monotonic() + 60
        while log.read_text().count("serve: starting worker again") < 2:
            assert serve.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
    finally:
        serve.send_signal(signal.SIGINT)
        code = serve.wait(timeout=30)
    said = log.read_text()
    assert code == 0, said
    assert "serve: worker stopped (exit 3)" in said
    assert "web" not in said  # the web part ran on, untouched


def test_a_part_that_cannot_start_stops_serve(tmp_path: Path):
    log = tmp_path / "serve.log"
    serve = _supervise("broken", log)
    try:
        code = serve.wait(timeout=60)
    finally:
        if serve.poll() is None:
            serve.kill()
    said = log.read_text()
    assert code == 2, said
    assert "serve: beat could not start (exit 2)" in said
