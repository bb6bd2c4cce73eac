"""Celery bound to the Flask app, as in Flask's own `examples/celery`."""

from __future__ import annotations

from pathlib import Path

from celery import Celery, Task
from celery.schedules import crontab
from flask import Flask
from kombu import Exchange, Queue

from service import broker as broker_transport
from service import handoff
from service.domain.settings import TASK_TIME_LIMIT_SECONDS


def celery_init_app(app: Flask) -> Celery:
    class FlaskTask(Task):
        def __call__(self, *args: object, **kwargs: object) -> object:
            with app.app_context():
                return self.run(*args, **kwargs)

    celery_app = Celery(app.name, task_cls=FlaskTask)
    celery_app.config_from_object(celery_settings(app))
    celery_app.set_default()
    app.extensions["celery"] = celery_app
    return celery_app


def celery_settings(app: Flask) -> dict[str, object]:
    broker = app.config["CELERY_BROKER_URL"]
    instance = Path(app.config["INSTANCE_PATH"])
    settings: dict[str, object] = {
        "broker_url": broker,
        "include": ["workers.tasks"],
        "task_default_queue": handoff.scheduled_queue(app.config),
        # The schedule's queue and the on-demand one (service/handoff.py). A worker started
        # without -Q serves both; `serve` and docker-compose run one worker for each, so
        # on-demand builds never hold up a period's summary or an email.
        "task_queues": [
            Queue(name, Exchange(name), routing_key=name)
            for name in (handoff.scheduled_queue(app.config), handoff.on_demand_queue(app.config))
        ],
        # Results live in the database (summaries, deliveries), never in the broker.
        "task_ignore_result": True,
        "timezone": "UTC",
        "enable_utc": True,
        "worker_hijack_root_logger": False,
        # Reliability, on purpose:
        # - acknowledge a task only when it has finished, and give it back to the queue
        #   if the worker process dies, so a killed worker loses no build;
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # - take one task at a time: builds are long, and a prefetched task would wait
        #   behind another instead of going to a free worker;
        "worker_prefetch_multiplier": 1,
        # - Redis re-delivers an unacknowledged task after the visibility timeout (set
        #   below); it must be longer than the longest task (the hard limit here);
        "task_soft_time_limit": 600,
        "task_time_limit": TASK_TIME_LIMIT_SECONDS,
        # - with the broker down, publishing gives up quickly: the request has already
        #   stored its work in the database, and the sweep below hands it out later.
        "broker_connection_timeout": 3,
        "broker_connection_retry_on_startup": True,
        # - a worker never gives up on its broker (a disk full for an hour, Redis
        #   restarting): it keeps reconnecting, backing off, and resumes by itself.
        "broker_connection_max_retries": None,
        "task_publish_retry_policy": {
            "max_retries": 2,
            "interval_start": 0,
            "interval_step": 0.5,
            "interval_max": 1,
        },
        # The schedule: one tick a minute creates each period's summary (a unique key
        # keeps it to one per period) and re-sends builds that were lost.
        "beat_schedule": {
            handoff.TICK: {
                "task": handoff.TICK,
                "schedule": float(app.config["SCHEDULER_TICK_SECONDS"]),
            },
            # At the start of every minute (cron's resolution): send the subscriptions'
            # reports that came due, once each (a unique key per subscription and moment),
            # and hand out again deliveries whose task was lost.
            handoff.DISPATCH_SUBSCRIPTIONS: {
                "task": handoff.DISPATCH_SUBSCRIPTIONS,
                "schedule": crontab(),
            },
        },
        "beat_schedule_filename": str(instance / "celerybeat-schedule"),
    }
    if broker.startswith("sqla+"):
        # kombu's SQLAlchemy transport, with channels that survive a failed write (a full
        # disk) instead of leaking a connection per reconnect: service/broker.py.
        broker_transport.use_for_sqla_urls()
        # It hands these to create_engine; it has no visibility timeout (a task a dead
        # worker held is found again by the sweep instead).
        settings["broker_transport_options"] = {"connect_args": {"timeout": 30}}
        if broker.startswith("sqla+sqlite:///"):
            Path(broker.removeprefix("sqla+sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    else:
        settings["broker_transport_options"] = {
            "visibility_timeout": app.config["CELERY_VISIBILITY_TIMEOUT"],
            # Every key this instance keeps in Redis (queues, unacknowledged tasks) starts
            # with this, so instances sharing a Redis stay apart and can be cleaned up.
            "global_keyprefix": app.config["CELERY_KEY_PREFIX"],
        }
    return settings
