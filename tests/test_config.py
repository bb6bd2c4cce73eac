"""Configuration read from the environment, with the embedded defaults."""

from __future__ import annotations

import os
import secrets
import subprocess

import pytest

import config
from service.serve import web_command
from tests.browser import free_port

# Touches no database and no broker: the embedded pass runs it, the PostgreSQL + Redis
# pass skips it (tests/conftest.py).
pytestmark = pytest.mark.backend_independent


def test_plain_postgresql_urls_use_the_installed_driver():
    assert config.database_url("postgresql://u@db/needs") == "postgresql+psycopg://u@db/needs"
    assert config.database_url("postgres://u@db/needs") == "postgresql+psycopg://u@db/needs"
    assert config.database_url("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"


def test_embedded_defaults_live_in_the_instance_folder(tmp_path, monkeypatch):
    for name in ("DATABASE_URL", "CELERY_BROKER_URL", "SMTP_HOST"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("INSTANCE_PATH", str(tmp_path))
    settings = config.load()
    assert settings["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path}/needs-tracker.db"
    assert settings["CELERY_BROKER_URL"] == f"sqla+sqlite:///{tmp_path}/broker.db"
    assert settings["SMTP_HOST"] is None
    assert settings["SUMMARY_INTERVAL_MINUTES"] == 60
    assert settings["STALE_AFTER_HOURS"] == 6


def test_sphere_minimums_can_be_set_from_the_environment(monkeypatch):
    monkeypatch.setenv("SPHERE_WATER_LITRES_PER_PERSON_PER_DAY", "20")
    sphere = config.load()["SPHERE"]
    assert sphere["water_litres_per_person_per_day"] == 20.0
    assert sphere["food_kcal_per_person_per_day"] == 2100.0
    assert sphere["covered_space_m2_per_person"] == 3.5
    assert sphere["people_per_latrine"] == 20.0


@pytest.mark.parametrize(
    "name, value",
    [
        ("SUMMARY_INTERVAL_MINUTES", "hourly"),
        ("SUMMARY_INTERVAL_MINUTES", "0"),
        ("SPHERE_PEOPLE_PER_LATRINE", "0"),
        ("SMALL_CELL_THRESHOLD", "0"),
        ("SMALL_CELL_THRESHOLD", "2"),
        ("SMALL_CELL_THRESHOLD", "five"),
    ],
)
def test_a_bad_setting_names_itself(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=name):
        config.load()


@pytest.mark.parametrize("weak", ["a", "changeme", "x" * 31, "ab" * 40])
def test_a_weak_secret_key_is_refused_saying_what_to_do(monkeypatch, weak):
    monkeypatch.setenv("SECRET_KEY", weak)
    with pytest.raises(ValueError, match="SECRET_KEY") as refused:
        config.load()
    assert "token_urlsafe" in str(refused.value)


def test_a_strong_secret_key_or_none_starts(monkeypatch):
    monkeypatch.setenv("SECRET_KEY", secrets.token_urlsafe(48))
    assert len(config.load()["SECRET_KEY"]) == 64
    monkeypatch.setenv("SECRET_KEY", secrets.token_hex(16))  # 32 hex digits will do
    assert len(config.load()["SECRET_KEY"]) == 32
    monkeypatch.setenv("SECRET_KEY", "")
    assert config.load()["SECRET_KEY"] == ""  # the instance's generated key, then


def test_the_web_server_will_not_start_with_a_weak_secret_key(tmp_path):
    """The real gunicorn, as `serve` and compose run it: it stops at once, saying why."""
    env = dict(os.environ, SECRET_KEY="a", INSTANCE_PATH=str(tmp_path))
    started = subprocess.run(
        web_command(free_port(), str(tmp_path)),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert started.returncode != 0
    assert "SECRET_KEY is too short (1 characters" in started.stderr + started.stdout
