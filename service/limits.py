"""Rate limits, with Flask-Limiter: per token on writes and on summaries asked for, per
client address on sign-in and on calls whose token is missing, unknown or revoked.

Over a limit the answer is 429 problem+json (a page on the dashboard) with Retry-After:
the seconds until the limit's window lets the caller in again. The counters live in
RATELIMIT_STORAGE_URI: Redis in production (every web process counts together), memory
by default. The limits themselves are settings (config.py), in Flask-Limiter's notation.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

from flask import Flask, Response, request, session
from flask_limiter import ApplicationLimit, Limiter, RateLimitExceeded

from service.domain.tokens import hash_token
from service.errors import problem_response

log = logging.getLogger(__name__)

WRITES = ("POST", "PUT", "PATCH", "DELETE")
ON_DEMAND_SUMMARIES = frozenset({"summaries.Summaries", "dashboard.request_summary"})
SIGN_IN = "dashboard.sign_in"
# Health checks answer load balancers and orchestrators, whoever else shares their address.
NEVER_LIMITED_BLUEPRINTS = frozenset({"health"})


def client_address() -> str:
    return request.remote_addr or "unknown"


def token_key() -> str:
    """The caller's token, as its hash (never the secret), for the API; for the dashboard
    the signed-in session (its cookie names a server-side session, not the token; a new
    one costs a sign-in, itself limited per address). Empty when the request has none."""
    scheme, _, secret = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and secret.strip():
        return "token:" + hash_token(secret.strip())[:32]
    session_id = session.get("session_id")
    return f"session:{session_id}" if isinstance(session_id, str) else ""


def _without_token() -> bool:
    return not token_key()


def _not_asking_for_a_summary() -> bool:
    return request.endpoint not in ON_DEMAND_SUMMARIES or not token_key()


def _not_signing_in() -> bool:
    return request.endpoint != SIGN_IN


def _never_limited() -> bool:
    return request.blueprint in NEVER_LIMITED_BLUEPRINTS


def _refused_its_token(response: Response) -> bool:
    return response.status_code == 401


def init_app(app: Flask) -> Limiter:
    """Bind the limits to `app`; call before the token check is registered, so a caller
    over a limit is refused before its token is even looked up."""
    config = app.config
    limiter = Limiter(
        client_address,
        application_limits=[
            ApplicationLimit(
                config["RATELIMIT_WRITES"],
                key_function=token_key,
                scope="writes",
                methods=WRITES,
                exempt_when=_without_token,
                error_message="Too many changes sent with this token; wait and send again.",
            ),
            ApplicationLimit(
                config["RATELIMIT_ON_DEMAND_SUMMARIES"],
                key_function=token_key,
                scope="on-demand-summaries",
                methods=("POST",),
                exempt_when=_not_asking_for_a_summary,
                error_message="Too many summaries asked for with this token; the scheduled "
                "ones keep coming. Ask again later.",
            ),
            ApplicationLimit(
                config["RATELIMIT_SIGN_IN"],
                key_function=client_address,
                scope="sign-in",
                methods=("POST",),
                exempt_when=_not_signing_in,
                error_message="Too many sign-in attempts from this address; wait a moment.",
            ),
            # Counted only when a token is refused (401), checked on every request: an
            # address guessing tokens is refused before any look-up, for the window.
            ApplicationLimit(
                config["RATELIMIT_FAILED_AUTH"],
                key_function=client_address,
                scope="failed-auth",
                exempt_when=_never_limited,
                deduct_when=_refused_its_token,
                error_message="Too many requests with a missing, unknown or revoked token "
                "from this address; wait and use a valid one.",
            ),
        ],
        # Requests to no route count too: a token guesser gets nothing from a wrong path.
        request_identifier=lambda: request.endpoint or "unrouted",
        key_prefix=config["RATELIMIT_KEY_PREFIX"],
        # A counter per window: one Redis key per caller and limit; Retry-After is exact.
        strategy="fixed-window",
        # The limits' store unreachable: count in this process's memory until it is back
        # (looked for again at growing intervals), and never answer 500 for it.
        in_memory_fallback_enabled=True,
        swallow_errors=True,
    )
    limiter.init_app(app)
    app.register_error_handler(RateLimitExceeded, _too_many(limiter))
    return limiter


def _too_many(limiter: Limiter) -> Callable[[RateLimitExceeded], Response]:
    def answer(error: RateLimitExceeded) -> Response:
        breached = limiter.current_limit
        # When the breached limit's window lets this caller in again.
        reset_at = breached.window.reset_time if breached else time.time() + 60
        retry_after = str(max(1, math.ceil(reset_at - time.time())))
        log.info(
            "rate limit reached", extra={"path": request.path, "limit": str(error.limit.limit)}
        )
        if request.blueprint == "dashboard":
            from service.dashboard import html_error

            page, status = html_error(error)
            return Response(page, status, {"Retry-After": retry_after}, mimetype="text/html")
        return problem_response(
            429, error.description or "Too many requests.", headers={"Retry-After": retry_after}
        )

    return answer
