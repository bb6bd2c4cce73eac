"""The plain domain core shared by the HTTP API, the Celery tasks and the CLI."""
