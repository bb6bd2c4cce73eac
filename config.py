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


def database_url(raw: str) -> str:
    """Map the plain URLs hosting platforms write to the driver we install (psycopg 3)."""
    for prefix in ("postgres://", "postgresql://"):
        if raw.startswith(prefix):
            return "postgresql+psycopg://" + raw[len(prefix) :]
    return raw


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
        "CELERY_BROKER_URL": broker_url,
        "CELERY_QUEUE": env.get("CELERY_QUEUE") or "needs-tracker",
        "CELERY_VISIBILITY_TIMEOUT": _int(env, "CELERY_VISIBILITY_TIMEOUT", 3600),
        "CELERY_KEY_PREFIX": env.get("CELERY_KEY_PREFIX") or "",
        "MAX_CONTENT_LENGTH": _int(env, "MAX_BODY_BYTES", 1024 * 1024),
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
        # Counts of people from 1 to this minus 1 are suppressed in what readers and email
        # recipients see (README: "Small cells"). 1 turns suppression off; 2 is refused,
        # since with zeros shown "< 2" would mean exactly 1.
        "SMALL_CELL_THRESHOLD": _int(env, "SMALL_CELL_THRESHOLD", 5),
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
    }
    # Where recipients reach the service: the links in emails (summary, unsubscribe).
    config["PUBLIC_BASE_URL"] = _base_url(
        env.get("PUBLIC_BASE_URL") or f"http://127.0.0.1:{config['PORT']}"
    )
    for name in (
        "SUMMARY_INTERVAL_MINUTES",
        "STALE_AFTER_HOURS",
        "SCHEDULER_TICK_SECONDS",
        "SMTP_TIMEOUT_SECONDS",
        "DELIVERY_RETRY_SECONDS",
    ):
        if config[name] < 1:
            raise ValueError(f"{name} must be at least 1, got {config[name]}")
    if config["SMALL_CELL_THRESHOLD"] < 1 or config["SMALL_CELL_THRESHOLD"] == 2:
        raise ValueError(
            "SMALL_CELL_THRESHOLD must be 1 (no suppression) or at least 3, got "
            f"{config['SMALL_CELL_THRESHOLD']}"
        )
    config.update(overrides)  # DATABASE_URL from overrides is already in the URI above
    return config
