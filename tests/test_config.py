"""Configuration read from the environment, with the embedded defaults."""

from __future__ import annotations

import pytest

import config


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
