"""The Celery entry point: `celery -A workers.make_celery worker` (and `beat`)."""

from service import create_app

flask_app = create_app()
celery_app = flask_app.extensions["celery"]
