# needs-tracker: one image for every part (web, worker, beat, the one-shot migrate).
# docker-compose.yml runs it; on its own it serves the API on port 8000 with the
# embedded default (SQLite and the embedded broker inside /app/instance).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    INSTANCE_PATH=/app/instance

WORKDIR /app

# The dependencies first, read from pyproject.toml, so a code change does not
# reinstall them. (No dev dependencies: the image does not run the tests.)
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# Then the project itself, installed in place: the app finds migrations/ (and
# config.py) relative to the source tree, so /app must be the installed tree.
COPY . .
RUN pip install --no-deps -e . \
    && useradd --create-home --uid 10001 --user-group app \
    && mkdir -p /app/instance \
    && chown app:app /app/instance

USER app

EXPOSE 8000

CMD ["gunicorn", "--config", "python:service.gunicorn_conf", "--bind", "0.0.0.0:8000", "--workers", "2", "--threads", "4", "service.wsgi:app"]
