"""A PostgreSQL server of a test's own, on a free port, that the test may stall (SIGSTOP
every process of it) and resume: the shared server on 5432 is never touched."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg

from tests.browser import free_port


def _bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    assert found, "PostgreSQL's server binaries (initdb, pg_ctl) are not installed"
    return Path(found[-1]).parent


def _as_owner() -> list[str]:
    # PostgreSQL refuses to run as root; as root, run it as the `postgres` user.
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


@dataclass
class Cluster:
    folder: Path
    port: int

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def _pids(self) -> list[int]:
        postmaster = int((self.folder / "data" / "postmaster.pid").read_text().split()[0])
        children = subprocess.run(
            ["pgrep", "-P", str(postmaster)], capture_output=True, text=True
        ).stdout.split()
        return [postmaster, *map(int, children)]

    def stall(self) -> None:
        """Every process of the server stops where it is: queries hang, connections wait."""
        for pid in reversed(self._pids()):
            os.kill(pid, signal.SIGSTOP)

    def resume(self) -> None:
        for pid in self._pids():
            os.kill(pid, signal.SIGCONT)

    def stop(self) -> None:
        """PostgreSQL stopped as an operator stops it (fast: clients are disconnected)."""
        self._pg_ctl("-m", "fast", "-w", "stop")

    def start(self) -> None:
        self._pg_ctl("-w", "start")

    def _pg_ctl(self, *args: str) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run(
            [
                *_as_owner(),
                str(_bindir() / "pg_ctl"),
                "-D",
                str(self.folder / "data"),
                "-o",
                options,
                "-l",
                str(self.folder / "log"),
                *args,
            ],
            check=True,
            capture_output=True,
        )


@contextmanager
def private_postgres() -> Iterator[Cluster]:
    bindir = _bindir()
    folder = Path(tempfile.mkdtemp(prefix="nt-pg-", dir="/tmp"))
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    cluster = Cluster(folder, free_port())
    data = folder / "data"
    run = [*_as_owner()]
    subprocess.run(
        [*run, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-N"],
        check=True,
        capture_output=True,
    )
    cluster.start()
    try:
        yield cluster
    finally:
        try:
            cluster.resume()
        except (OSError, ValueError):
            pass
        subprocess.run(
            [*run, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
            capture_output=True,
        )
        shutil.rmtree(folder, ignore_errors=True)
