"""Celery workers: the entry point and the tasks that call the domain core."""
