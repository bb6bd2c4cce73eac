"""The instance folder holds the embedded database (people's whereabouts), the broker's
queue, the outbox of emails, the secret key and beat's schedule: for its owner only.

Every process of the service (web, worker, beat, the command line) creates its files
with umask 077, so whatever SQLite (its -wal and -shm included, which take the
database's mode), kombu, the outbox or beat create is 0600 and each folder 0700; and at
start-up it takes group and other access away from what an older version left readable.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

PRIVATE = 0o077  # the umask: no group or other access to anything created


def keep_private(folder: Path) -> None:
    os.umask(PRIVATE)
    folder.mkdir(parents=True, exist_ok=True)
    if not folder.stat().st_mode & PRIVATE:
        # Made private at an earlier start; everything since was created under the
        # umask. (Every process starts here, and the outbox only grows.)
        return
    # The folder last: an interrupted walk is done again at the next start.
    for path in [*folder.rglob("*"), folder]:
        try:
            mode = path.lstat().st_mode
            if not stat.S_ISLNK(mode) and mode & PRIVATE:
                path.chmod(stat.S_IMODE(mode) & ~PRIVATE)
        except FileNotFoundError:  # gone meanwhile (a temporary file, SQLite's journal)
            continue
