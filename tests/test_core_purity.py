"""The core speaks no HTTP: importing any module of `service.domain` loads nothing of the
web edge (the API, the dashboard, their problem+json errors, flask-smorest), nor the
email rendering, nor what hands work to the workers (the core returns ids; the edges
hand them out), so workers, the command line and other edges can use it as it is."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

# Touches no database and no broker: the embedded pass runs it, the PostgreSQL + Redis
# pass skips it (tests/conftest.py).
pytestmark = pytest.mark.backend_independent

EDGE = (
    "service.api",
    "service.dashboard",
    "service.errors",
    "service.auth",
    "service.mail",
    "service.handoff",
    "service.celery_app",
    "service.importing",
    "celery",
    "flask_smorest",
    "webargs",
    "apispec",
)


def test_importing_the_core_loads_nothing_of_the_edge():
    # A fresh interpreter imports every module of the core (subpackages too); what any one
    # of them loads is then in sys.modules.
    script = textwrap.dedent(
        f"""
        import importlib, pkgutil, sys
        import service.domain
        names = [m.name for m in pkgutil.walk_packages(service.domain.__path__, "service.domain.")]
        for name in names:
            importlib.import_module(name)
        edge = {EDGE!r}
        loaded = sorted(m for m in sys.modules if m.startswith(edge))
        print(len(names))
        print(",".join(loaded))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    count, loaded = done.stdout.strip().splitlines() + [""] * (2 - len(done.stdout.split()))
    assert int(count) >= 15, done.stdout  # every module was found and imported
    assert loaded == "", f"the core loads the edge: {loaded}"
