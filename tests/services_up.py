"""Exit 0 when the PostgreSQL and Redis that the second test pass uses answer."""

from __future__ import annotations

import sys

import psycopg
import redis

from tests.backends import POSTGRES_ADMIN_URL, REDIS_URL


def main() -> int:
    missing = []
    try:
        psycopg.connect(POSTGRES_ADMIN_URL, connect_timeout=3).close()
    except psycopg.Error as exc:
        missing.append(f"PostgreSQL at {POSTGRES_ADMIN_URL}: {str(exc).strip()}")
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        missing.append(f"Redis at {REDIS_URL}: {exc}")
    for line in missing:
        print(f"not reachable: {line}", file=sys.stderr)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
