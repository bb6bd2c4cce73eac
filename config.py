"""Configuration from the environment (and a `.env` file), with embedded defaults.

A new user sets nothing: the database is SQLite and the Celery broker is kombu's
SQLAlchemy transport over SQLite, both inside the instance folder. Production sets
DATABASE_URL (a plain `postgresql://` URL is fine) and CELERY_BROKER_URL (Redis).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from dotenv import load_dotenv

PROJECT_ROOT = Path(__file__).resolve().parent
DEFAULT_INSTANCE_PATH = PROJECT_ROOT / "instance"

# Sphere Handbook (2018) minimum standards, per person per day unless noted.
# One table, so an operation can adapt them (e.g. a colder climate) by configuration.
SPHERE_DEFAULTS: dict[str, float] = {
    "water_litres_per_person_per_day": 15.0,
    "food_kcal_per_person_per_day": 2100.0,
    "covered_space_m2_per_person": 3.5,
    "people_per_latrine": 20.0,
}


def _bool(value: str | None, default: bool = False) -> bool:
    if value is None or value.strip() == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _int(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be a whole number, got {raw!r}") from exc


def _float(env: dict[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be a number, got {raw!r}") from exc
    if not value > 0:
        raise ValueError(f"{name} must be more than 0, got {raw!r}")
    return value


def _base_url(raw: str) -> str:
    """An http(s) URL with nothing that could break out of an email header."""
    url = raw.strip().rstrip("/")
    if not re.fullmatch(r"https?://[^\s\x00-\x1f\x7f<>\"]+", url):
        raise ValueError(f"PUBLIC_BASE_URL must be an http:// or https:// URL, got {raw!r}")
    return url


def _limit(env: dict[str, str], name: str, default: str) -> str:
    from limits import parse_many

    raw = env.get(name) or default
    try:
        parse_many(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be like '600 per minute', got {raw!r}") from exc
    return raw


def _allowed_hosts(raw: str) -> tuple[str, ...]:
    """WEBHOOK_ALLOWED_HOSTS: host names (lower case) and networks ("10.0.0.0/8"; an
    address is a network of one), checked here so a typo fails at start-up."""
    import ipaddress

    entries = []
    for item in (part.strip().lower().strip("[]") for part in raw.split(",")):
        if not item:
            continue
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            if not re.fullmatch(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*", item):
                raise ValueError(
                    f"WEBHOOK_ALLOWED_HOSTS: not a host name, address or network: {item!r}"
                ) from None
        entries.append(item)
    return tuple(entries)


def _schedule(env: dict[str, str], name: str, default: str) -> tuple[int, ...]:
    raw = env.get(name) or default
    try:
        delays = tuple(int(part) for part in raw.split(","))
    except ValueError:
        raise ValueError(f"{name} must be seconds separated by commas, got {raw!r}") from None
    if not delays or any(delay < 0 for delay in delays):
        raise ValueError(f"{name} must list at least one delay of 0 seconds or more")
    return delays


def _limits_storage(broker_url: str) -> str:
    return broker_url if broker_url.startswith(("redis://", "rediss://")) else "memory://"


# A SECRET_KEY signs the dashboard's session cookies and the unsubscribe links: a short
# or repetitive one can be guessed offline from any signed value. token_urlsafe(48) gives
# 64 characters; 32 is the least accepted, with some variety in it.
SECRET_KEY_MINIMUM = 32
SECRET_KEY_DISTINCT = 10
SECRET_KEY_ADVICE = (
    "Generate one with: python3 -c 'import secrets; print(secrets.token_urlsafe(48))' "
    "(or leave SECRET_KEY unset to use the one generated in the instance folder)."
)


def _secret_key(raw: str) -> str:
    """Unset (empty) means the per-instance generated key; anything set must be strong."""
    if not raw:
        return ""
    if len(raw) < SECRET_KEY_MINIMUM:
        raise ValueError(
            f"SECRET_KEY is too short ({len(raw)} characters; at least "
            f"{SECRET_KEY_MINIMUM} random ones are needed). {SECRET_KEY_ADVICE}"
        )
    if len(set(raw)) < SECRET_KEY_DISTINCT:
        raise ValueError(
            f"SECRET_KEY is too repetitive ({len(set(raw))} different characters): use a "
            f"random one. {SECRET_KEY_ADVICE}"
        )
    return raw


def database_url(raw: str) -> str:
    """Map the plain URLs hosting platforms write to the driver we install (psycopg 3)."""
    for prefix in ("postgres://", "postgresql://"):
        if raw.startswith(prefix):
            return "postgresql+psycopg://" + raw[len(prefix) :]
    return raw


def engine_options(url: str, env: dict[str, str]) -> dict[str, Any]:
    """How the app holds its database connections (SQLALCHEMY_ENGINE_OPTIONS)."""
    options: dict[str, Any] = {
        # A pooled connection is checked (a round trip) before each use: one the database
        # dropped (a restart, a terminated backend) is replaced instead of failing the
        # first request of each idle worker after the database is back.
        "pool_pre_ping": True,
        # And never kept past this, whatever a firewall or proxy does to idle ones.
        "pool_recycle": _int(env, "DATABASE_POOL_RECYCLE_SECONDS", 1800),
    }
    if url.startswith("postgresql"):
        check = _int(env, "DATABASE_CLIENT_CHECK_SECONDS", 5)
        timeout = _int(env, "DATABASE_CONNECT_TIMEOUT_SECONDS", 5)
        if check < 0 or timeout < 1:
            raise ValueError(
                "DATABASE_CLIENT_CHECK_SECONDS must be 0 or more and "
                "DATABASE_CONNECT_TIMEOUT_SECONDS at least 1"
            )
        options["connect_args"] = {
            # Give up connecting after this (a host gone away answers nothing at all).
            "connect_timeout": timeout,
            # TCP keepalives: a server that vanished is noticed in about a minute.
            "keepalives": 1,
            "keepalives_idle": 30,
            "keepalives_interval": 10,
            "keepalives_count": 3,
        }
        if check:
            # PostgreSQL checks every few seconds, even mid-statement or waiting for a
            # lock, that the client is still there, and ends the backend when it is not:
            # a killed request's transaction (and the keys it holds) ends within this.
            # Keepalives from the server too, for a client whose machine vanished.
            # (0 sends none of it: a pooler such as PgBouncer refuses these options.)
            options["connect_args"]["options"] = (
                f"-c client_connection_check_interval={check * 1000} "
                "-c tcp_keepalives_idle=30 -c tcp_keepalives_interval=10 "
                "-c tcp_keepalives_count=3"
            )
    return options


def load(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Build the Flask config mapping from the environment, `.env`, and overrides."""
    load_dotenv(PROJECT_ROOT / ".env", override=False)
    env = dict(os.environ)
    overrides = dict(overrides or {})

    instance_path = Path(
        overrides.pop("INSTANCE_PATH", None) or env.get("INSTANCE_PATH") or DEFAULT_INSTANCE_PATH
    ).resolve()

    db_url = overrides.get("DATABASE_URL") or env.get("DATABASE_URL")
    if not db_url:
        db_url = f"sqlite:///{instance_path / 'needs-tracker.db'}"
    broker_url = overrides.get("CELERY_BROKER_URL") or env.get("CELERY_BROKER_URL")
    if not broker_url:
        broker_url = f"sqla+sqlite:///{instance_path / 'broker.db'}"

    config: dict[str, Any] = {
        "INSTANCE_PATH": str(instance_path),
        "SECRET_KEY": env.get("SECRET_KEY") or "",
        "DATABASE_URL": db_url,
        "SQLALCHEMY_DATABASE_URI": database_url(db_url),
        "SQLALCHEMY_ENGINE_OPTIONS": engine_options(database_url(db_url), env),
        "CELERY_BROKER_URL": broker_url,
        "CELERY_QUEUE": env.get("CELERY_QUEUE") or "needs-tracker",
        "CELERY_VISIBILITY_TIMEOUT": _int(env, "CELERY_VISIBILITY_TIMEOUT", 3600),
        "CELERY_KEY_PREFIX": env.get("CELERY_KEY_PREFIX") or "",
        "MAX_CONTENT_LENGTH": _int(env, "MAX_BODY_BYTES", 1024 * 1024),
        # SQLite (the embedded default) has one writer at a time: how long a request
        # waits for it before it is answered 503 with Retry-After (the client tries
        # again), and how long a worker's transaction waits (nobody waits on the line).
        "SQLITE_BUSY_TIMEOUT_SECONDS": _float(env, "SQLITE_BUSY_TIMEOUT_SECONDS", 5.0),
        "SQLITE_WORKER_BUSY_TIMEOUT_SECONDS": _float(
            env, "SQLITE_WORKER_BUSY_TIMEOUT_SECONDS", 30.0
        ),
        # /readyz says not ready when the disk of the embedded database (or broker) has
        # less free than this: writes fail there first (answered 503).
        "DISK_MIN_FREE_MB": _int(env, "DISK_MIN_FREE_MB", 32),
        "REPORTS_BATCH_LIMIT": 500,
        # Field devices' clocks drift; a report a little "in the future" is still refused
        # beyond this tolerance.
        "CLOCK_SKEW_SECONDS": _int(env, "CLOCK_SKEW_SECONDS", 120),
        # A read (GET) may go by who held its token up to this long ago; a write always
        # looks the token up. So a revoked token writes nothing at once, reads nothing
        # after this. 0: every request looks its token up.
        "TOKEN_CACHE_SECONDS": _int(env, "TOKEN_CACHE_SECONDS", 2),
        "SUMMARY_INTERVAL_MINUTES": _int(env, "SUMMARY_INTERVAL_MINUTES", 60),
        "STALE_AFTER_HOURS": _int(env, "STALE_AFTER_HOURS", 6),
        # After an outage, the scheduler creates the summaries of the periods it missed,
        # oldest first, up to this many periods back (with the current one): a day of
        # hourly summaries by default.
        "SUMMARY_CATCH_UP_PERIODS": _int(env, "SUMMARY_CATCH_UP_PERIODS", 24),
        # Counts of people from 1 to this minus 1 are suppressed in what readers and email
        # recipients see (README: "Small cells"). 1 turns suppression off; 2 is refused,
        # since with zeros shown "< 2" would mean exactly 1.
        "SMALL_CELL_THRESHOLD": _int(env, "SMALL_CELL_THRESHOLD", 5),
        # The dataset a summary is published as (GET /api/v1/summaries/{id}/package): the
        # metadata HDX asks of every dataset. HDX's licence ids (cc-by-igo, cc-by,
        # odc-odbl, ...), methodologies ("Census", "Sample Survey", "Direct Observational
        # Data/Anecdotal Data", "Registry", "Other") and tags (its approved vocabulary).
        "DATASET_TITLE": env.get("DATASET_TITLE")
        or "Displaced people waiting at sites: situation summary",
        "DATASET_NOTES": env.get("DATASET_NOTES")
        or "People waiting at each site, with their sex and age, vulnerabilities, reported "
        "needs and the Sphere minimums they call for, as counted by site coordinators. "
        "A row per site and a total row; no names of people.",
        "DATASET_SOURCE": env.get("DATASET_SOURCE") or "Site coordinators' head counts",
        "DATASET_ORGANISATION": env.get("DATASET_ORGANISATION") or "needs-tracker",
        "DATASET_MAINTAINER": env.get("DATASET_MAINTAINER") or "",
        "DATASET_LICENSE": env.get("DATASET_LICENSE") or "cc-by-igo",
        "DATASET_METHODOLOGY": env.get("DATASET_METHODOLOGY")
        or "Direct Observational Data/Anecdotal Data",
        "DATASET_TAGS": env.get("DATASET_TAGS")
        or "refugees,displaced persons locations-camps-shelters,people in need-pin",
        # Empty: worked out from SUMMARY_INTERVAL_MINUTES (HDX: "0" live, "1" daily, ...).
        "DATASET_UPDATE_FREQUENCY": env.get("DATASET_UPDATE_FREQUENCY") or "",
        # How often the scheduler looks for a due summary and for lost builds.
        "SCHEDULER_TICK_SECONDS": _int(env, "SCHEDULER_TICK_SECONDS", 60),
        # A summary build handed to a worker this long ago and still pending is re-sent.
        "SUMMARY_BUILD_TIMEOUT_SECONDS": _int(env, "SUMMARY_BUILD_TIMEOUT_SECONDS", 300),
        "SMTP_HOST": env.get("SMTP_HOST") or None,
        "SMTP_PORT": _int(env, "SMTP_PORT", 25),
        "SMTP_USERNAME": env.get("SMTP_USERNAME") or None,
        "SMTP_PASSWORD": env.get("SMTP_PASSWORD") or None,
        "SMTP_STARTTLS": _bool(env.get("SMTP_STARTTLS")),
        "MAIL_FROM": env.get("MAIL_FROM") or "needs-tracker@localhost",
        # Seconds an SMTP connect, command or reply may take before the attempt is retried.
        "SMTP_TIMEOUT_SECONDS": _int(env, "SMTP_TIMEOUT_SECONDS", 20),
        # A delivery that met a temporary SMTP failure is tried again after this many
        # seconds times 2^(attempts so far): 2, 4, 8, 16, 32 minutes, six tries in an hour.
        "DELIVERY_RETRY_SECONDS": _int(env, "DELIVERY_RETRY_SECONDS", 60),
        # A subscription whose address the mail server refused for good (SMTP 5xx) this
        # many times in a row is suspended until an admin resumes it: one refusal can be
        # a server's mistake, three in a row is an address that is gone.
        "SUBSCRIPTION_SUSPEND_AFTER": _int(env, "SUBSCRIPTION_SUSPEND_AFTER", 3),
        # Webhooks (docs/webhooks.md). Hosts or networks ("127.0.0.1,10.0.0.0/8") that
        # endpoints may reach over plain http or at a private address; every other
        # endpoint must be https to a public address.
        "WEBHOOK_ALLOWED_HOSTS": _allowed_hosts(env.get("WEBHOOK_ALLOWED_HOSTS") or ""),
        # Seconds the receiver may take to answer (connecting: at most 5).
        "WEBHOOK_TIMEOUT_SECONDS": _float(env, "WEBHOOK_TIMEOUT_SECONDS", 10.0),
        # After a rotation, the old secret still signs (beside the new) this long.
        "WEBHOOK_SECRET_GRACE_HOURS": _float(env, "WEBHOOK_SECRET_GRACE_HOURS", 24.0),
        # Deliveries failed for good in a row that disable an endpoint.
        "WEBHOOK_DISABLE_AFTER": _int(env, "WEBHOOK_DISABLE_AFTER", 5),
        # Seconds between a failed attempt and the next: 5 s, 1 min, 5 min, 30 min, 2 h,
        # 6 h, 12 h (eight attempts over about 21 hours), then the delivery has failed.
        "WEBHOOK_RETRY_SCHEDULE": _schedule(
            env, "WEBHOOK_RETRY_SCHEDULE", "5,60,300,1800,7200,21600,43200"
        ),
        # SPHERE_WATER_LITRES_PER_PERSON_PER_DAY=20 etc. adapt a standard to the context.
        "SPHERE": {
            name: _float(env, f"SPHERE_{name.upper()}", default)
            for name, default in SPHERE_DEFAULTS.items()
        },
        # The largest CSV accepted by POST /api/v1/reports/import and the dashboard's
        # upload (larger gets 413). 8 MiB is about 80,000 rows.
        "MAX_IMPORT_BYTES": _int(env, "MAX_IMPORT_BYTES", 8 * 1024 * 1024),
        # The dashboard's sign-in cookie: never readable by scripts, not sent on cross-site
        # requests; Secure (HTTPS only) wherever the service is behind TLS.
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": _bool(env.get("SESSION_COOKIE_SECURE")),
        # How often the dashboard's overview reloads itself.
        "DASHBOARD_REFRESH_SECONDS": _int(env, "DASHBOARD_REFRESH_SECONDS", 60),
        "LOG_LEVEL": env.get("LOG_LEVEL") or "INFO",
        "PORT": _int(env, "PORT", 8000),
        # How many reverse proxies (TLS terminators) stand in front of the app, each adding
        # its X-Forwarded-For and X-Forwarded-Proto: the app then takes the client's address
        # (rate limits per address) and https from them. 0 (the default): the headers are
        # ignored, as anyone can send them. Set it to 1 behind exactly one proxy (the
        # compose file's Caddy), never more than stand there (docs/tls.md).
        "TRUSTED_PROXIES": _int(env, "TRUSTED_PROXIES", 0),
        # Rate limits (service/limits.py), in Flask-Limiter's notation: "N per second,
        # minute, hour or day", several joined by ";". Over one: 429 with Retry-After.
        "RATELIMIT_ENABLED": _bool(env.get("RATELIMIT_ENABLED"), default=True),
        # Where the counters live: the broker's Redis when the broker is Redis (every web
        # process then counts together), else this process's memory.
        "RATELIMIT_STORAGE_URI": env.get("RATELIMIT_STORAGE_URI") or _limits_storage(broker_url),
        # A fail-fast Redis: a limits store that does not answer lets requests through.
        "RATELIMIT_STORAGE_OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        # Per token, on every write (a phone syncs in batches of up to 500 reports).
        "RATELIMIT_WRITES": _limit(env, "RATELIMIT_WRITES", "600 per minute"),
        # Per token, on summaries asked for (POST /api/v1/summaries, the dashboard's button).
        "RATELIMIT_ON_DEMAND_SUMMARIES": _limit(
            env, "RATELIMIT_ON_DEMAND_SUMMARIES", "12 per minute;120 per hour"
        ),
        # Per client address, on the dashboard's sign-in form (every attempt).
        "RATELIMIT_SIGN_IN": _limit(env, "RATELIMIT_SIGN_IN", "10 per minute"),
        # Per client address, on requests whose token is missing, unknown or revoked (401);
        # past it, the address is refused (429) until the window ends.
        "RATELIMIT_FAILED_AUTH": _limit(env, "RATELIMIT_FAILED_AUTH", "30 per minute"),
    }

    # Where recipients reach the service: the links in emails (summary, unsubscribe).
    config["PUBLIC_BASE_URL"] = _base_url(
        env.get("PUBLIC_BASE_URL") or f"http://127.0.0.1:{config['PORT']}"
    )
    for name in (
        "SUMMARY_INTERVAL_MINUTES",
        "STALE_AFTER_HOURS",
        "SUMMARY_CATCH_UP_PERIODS",
        "SCHEDULER_TICK_SECONDS",
        "SMTP_TIMEOUT_SECONDS",
        "DELIVERY_RETRY_SECONDS",
        "SUBSCRIPTION_SUSPEND_AFTER",
        "WEBHOOK_DISABLE_AFTER",
    ):
        if config[name] < 1:
            raise ValueError(f"{name} must be at least 1, got {config[name]}")
    if config["TRUSTED_PROXIES"] < 0:
        raise ValueError(f"TRUSTED_PROXIES must be 0 or more, got {config['TRUSTED_PROXIES']}")
    if config["SMALL_CELL_THRESHOLD"] < 1 or config["SMALL_CELL_THRESHOLD"] == 2:
        raise ValueError(
            "SMALL_CELL_THRESHOLD must be 1 (no suppression) or at least 3, got "
            f"{config['SMALL_CELL_THRESHOLD']}"
        )
    # The dataset's maintainer: whoever the service's emails come from, unless named.
    config["DATASET_MAINTAINER"] = config["DATASET_MAINTAINER"] or config["MAIL_FROM"]
    config.update(overrides)  # DATABASE_URL from overrides is already in the URI above
    # Two deployments sharing one Redis keep their counters apart, as their queues.
    config.setdefault(
        "RATELIMIT_KEY_PREFIX",
        env.get("RATELIMIT_KEY_PREFIX")
        or f"{config['CELERY_KEY_PREFIX']}{config['CELERY_QUEUE']}:limits",
    )
    config["SECRET_KEY"] = _secret_key(config["SECRET_KEY"] or "")
    return config
