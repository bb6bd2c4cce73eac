"""gunicorn's settings shared by `needs-tracker serve` and docker-compose's web service
(`gunicorn --config python:service.gunicorn_conf ...`); each adds its bind and workers."""

# The access log on stdout, one request a line, control characters escaped.
accesslog = "-"
logger_class = "service.gunicorn_logging.EscapingLogger"
# The path without its query string (%(U)s, not the request line %(r)s), and no
# Referer: an unsubscribe link carries its signed token in the query.
access_log_format = '%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(M)sms "%(a)s"'
