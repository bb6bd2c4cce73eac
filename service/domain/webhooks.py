"""Webhooks: signed events (Standard Webhooks) for the systems of NGOs and agencies.

An endpoint is registered by an admin, or by a reader for itself; what it is sent is
what its owner's token would see (a reader's with small cells suppressed). Three
events: `summary.ready`, `summary.failed`, and `flag.raised` for each data-quality
flag new since the previous summary.

One event, one delivery: a delivery row per (endpoint, event, subject) under a unique
key, inserted with "on conflict do nothing", so schedulers and workers racing to create
it make one. Its `message_id` (`msg_...`) is fixed then and is the `webhook-id` of every
attempt, so a receiver drops repeats (a worker killed after the receiver answered but
before "delivered" was stored sends it again, with the same id).

Sending mirrors the email deliveries (service/domain/deliveries.py): a worker leases the
delivery and counts the attempt (committed before the request leaves), the request is
made by `service.webhook_sender` (the core speaks no HTTP), and `finish` records what
happened: delivered, retried on the schedule WEBHOOK_RETRY_SCHEDULE (timeouts,
connection errors, 408, 429, 5xx), or failed for good (any other answer, a redirect,
a host that now resolves to a private address, the schedule used up). Every attempt is
a row of its own. WEBHOOK_DISABLE_AFTER deliveries failed for good in a row disable the
endpoint, with the reason shown in the API.

Addresses: an endpoint must be https to a public address; plain http, or a private,
loopback, link-local, shared, reserved or multicast address, only for a host or network
listed in WEBHOOK_ALLOWED_HOSTS. The check is made at registration and again at every
attempt (the sender connects to the address checked, so a DNS answer that changes in
between cannot send it elsewhere).
"""

from __future__ import annotations

import base64
import ipaddress
import json
import logging
import secrets
import socket
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from standardwebhooks.webhooks import Webhook

from service.domain import audit, suppression, visibility
from service.domain.attempts import Outcome
from service.domain.callers import SYSTEM, Caller
from service.domain.errors import FieldError, Invalid, NotFound
from service.domain.exports import to_csv
from service.domain.settings import setting
from service.extensions import db
from service.models import (
    ApiToken,
    Site,
    Summary,
    SummaryStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookDeliveryStatus,
    WebhookEndpoint,
)
from service.types import utcnow

log = logging.getLogger(__name__)

EVENTS = ("summary.ready", "summary.failed", "flag.raised")
FORMATS = ("json", "csv", "hxl")
MAX_URL_LENGTH = 2048
# Connecting may take this long; answering, WEBHOOK_TIMEOUT_SECONDS.
CONNECT_TIMEOUT_SECONDS = 5.0
# The most of an answer that is read (the status code is what counts).
MAX_RESPONSE_BYTES = 64 * 1024
# A retry whose task arrives a little early (clocks of two machines) still runs.
EARLY = timedelta(seconds=30)
# A delivery not handed out, or handed out this long ago and not taken, was lost.
LOST_AFTER = timedelta(minutes=5)
ACTIVE = (
    WebhookDeliveryStatus.queued,
    WebhookDeliveryStatus.retrying,
    WebhookDeliveryStatus.delivering,
)
FAILED_SUMMARY = "The summary could not be built; ask for a new one."


class Refused(ValueError):
    """A URL or an address that webhooks may not reach."""


# ---------------------------------------------------------------------------
# Addresses
# ---------------------------------------------------------------------------


def resolve(host: str, port: int) -> list[str]:
    """Every address the host name resolves to now (the one place DNS is asked)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _listed(host: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address | None) -> bool:
    for entry in setting("WEBHOOK_ALLOWED_HOSTS"):
        try:
            network = ipaddress.ip_network(entry, strict=False)
        except ValueError:
            if host == entry:
                return True
            continue
        if address is not None and address.version == network.version and address in network:
            return True
    return False


def _public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not (
        address.is_multicast or address.is_reserved or address.is_unspecified
    )


@dataclass(frozen=True)
class Target:
    """Where a URL's request goes: the address checked, to connect to, and the name the
    request (Host, TLS SNI and certificate check) is made for."""

    scheme: str
    host: str
    port: int
    address: str
    path: str


def check_url(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path) of an endpoint URL, or Refused saying why."""
    if len(url) > MAX_URL_LENGTH:
        raise Refused(f"At most {MAX_URL_LENGTH} characters.")
    if any(ord(c) < 33 or ord(c) == 127 for c in url):
        raise Refused("Must not contain spaces or control characters.")
    if not url.isascii():
        raise Refused("Must be ASCII: write a host name in punycode and a path percent-encoded.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise Refused(f"Not a valid URL: {exc}.") from None
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower().rstrip(".")
    if scheme not in ("https", "http") or not host:
        raise Refused("Must be an https:// URL with a host name.")
    if parts.username is not None or parts.password is not None:
        raise Refused("Must not carry a user name or password; the signature proves the sender.")
    if parts.fragment:
        raise Refused("Must not have a #fragment.")
    port = port or (443 if scheme == "https" else 80)
    if scheme == "http" and not _http_allowed(host):
        raise Refused(
            "Must be https://; plain http only to a host listed in WEBHOOK_ALLOWED_HOSTS."
        )
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return scheme, host, port, path


def _http_allowed(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        # A name: listed itself, or every address it has is in a listed network.
        if _listed(host, None):
            return True
        try:
            addresses = [ipaddress.ip_address(a.split("%")[0]) for a in resolve(host, 80)]
        except OSError:
            return False
        return bool(addresses) and all(_listed(host, a) for a in addresses)
    return _listed(host, address)


def target(url: str) -> Target:
    """Check the URL and resolve its host now; Refused unless every address it has is
    public or listed in WEBHOOK_ALLOWED_HOSTS. The sender connects to the address
    returned, and to no other."""
    scheme, host, port, path = check_url(url)
    try:
        literal: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(
            host.strip("[]")
        )
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [literal]
    else:
        try:
            addresses = [ipaddress.ip_address(a.split("%")[0]) for a in resolve(host, port)]
        except (OSError, UnicodeError) as exc:
            raise Refused(f"The host name '{host}' does not resolve ({exc}).") from None
        if not addresses:
            raise Refused(f"The host name '{host}' does not resolve.")
    for address in addresses:
        if not _public(address) and not _listed(host, address):
            raise Refused(
                f"'{host}' resolves to {address}, a private, loopback, link-local or reserved "
                "address; list it in WEBHOOK_ALLOWED_HOSTS to allow it."
            )
    return Target(scheme, host, port, str(addresses[0]), path)


# ---------------------------------------------------------------------------
# Endpoints
# ---------------------------------------------------------------------------


def new_secret() -> str:
    """A secret as Standard Webhooks writes it: whsec_ and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def endpoint_state(endpoint: WebhookEndpoint) -> dict[str, Any]:
    """What the audit trail keeps of an endpoint: never its secret."""
    return {
        "url": endpoint.url,
        "owner_token_id": endpoint.owner_token_id,
        "site_ids": list(endpoint.site_ids),
        "formats": list(endpoint.formats),
        "events": list(endpoint.events),
        "deleted_at": _iso(endpoint.deleted_at),
        "disabled_at": _iso(endpoint.disabled_at),
        "disabled_reason": endpoint.disabled_reason,
    }


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat() if moment else None


def register(caller: Caller, data: dict[str, Any]) -> WebhookEndpoint:
    """A new endpoint (flushed); its secret is on the returned object, to be shown once."""
    caller.require_manages_own()
    errors = []
    try:
        target(data["url"])
    except Refused as exc:
        errors.append(FieldError("url", str(exc)))
    site_ids = list(dict.fromkeys(data.get("site_ids") or []))
    found = set(db.session.execute(select(Site.id).where(Site.id.in_(site_ids))).scalars())
    errors += [
        FieldError(f"site_ids.{index}", f"There is no site '{site_id}'.")
        for index, site_id in enumerate(site_ids)
        if site_id not in found
    ]
    if errors:
        raise Invalid("The webhook cannot be registered.", errors=errors)
    endpoint = WebhookEndpoint(
        owner_token_id=caller.token_id,
        url=data["url"],
        site_ids=site_ids,
        formats=list(dict.fromkeys(data.get("formats") or ["json"])),
        events=list(dict.fromkeys(data.get("events") or ["summary.ready"])),
        secret=new_secret(),
        created_at=utcnow(),
    )
    db.session.add(endpoint)
    db.session.flush()
    audit.record(caller, "webhook.create", "webhook", endpoint.id, after=endpoint_state(endpoint))
    return endpoint


def visible_endpoints(caller: Caller) -> Any:
    """The endpoints a caller sees (a select): all for admins, a reader's own."""
    caller.require_manages_own()
    query = select(WebhookEndpoint).where(WebhookEndpoint.deleted_at.is_(None))
    if not caller.is_admin:  # a reader's own (Caller.manages)
        query = query.where(WebhookEndpoint.owner_token_id == caller.token_id)
    return query.order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)


def find(caller: Caller, endpoint_id: uuid.UUID, *, deleted: bool = False) -> WebhookEndpoint:
    """An endpoint the caller may see and manage; another reader's is not found."""
    caller.require_manages_own()
    endpoint = db.session.get(WebhookEndpoint, endpoint_id)
    if (
        endpoint is None
        or (endpoint.deleted_at is not None and not deleted)
        or not caller.manages(endpoint.owner_token_id)
    ):
        raise NotFound(f"There is no webhook '{endpoint_id}'.")
    return endpoint


def delete(caller: Caller, endpoint_id: uuid.UUID) -> None:
    """Stop an endpoint's deliveries; its delivery log is kept."""
    endpoint = find(caller, endpoint_id)
    before = endpoint_state(endpoint)
    endpoint.deleted_at = utcnow()
    db.session.flush()
    audit.record(
        caller,
        "webhook.delete",
        "webhook",
        endpoint.id,
        before=before,
        after=endpoint_state(endpoint),
    )


def rotate_secret(caller: Caller, endpoint_id: uuid.UUID, now: datetime | None = None) -> str:
    """A new secret; the one it replaces still signs (beside it) for
    WEBHOOK_SECRET_GRACE_HOURS, so a receiver can switch without losing a delivery."""
    endpoint = find(caller, endpoint_id)
    now = now or utcnow()
    endpoint.previous_secret = endpoint.secret
    endpoint.previous_secret_until = now + timedelta(hours=setting("WEBHOOK_SECRET_GRACE_HOURS"))
    endpoint.secret = new_secret()
    db.session.flush()
    audit.record(caller, "webhook.rotate_secret", "webhook", endpoint.id)
    return endpoint.secret


def signing_secrets(endpoint: WebhookEndpoint, now: datetime) -> list[str]:
    """The secrets a delivery is signed with now: the current one, and the previous one
    during its grace period."""
    found = [endpoint.secret]
    until = endpoint.previous_secret_until
    if endpoint.previous_secret and until is not None and now < until:
        found.append(endpoint.previous_secret)
    return found


def _owner(endpoint: WebhookEndpoint) -> Caller | None:
    """Who the endpoint's deliveries are seen as: its owner's token (None: revoked)."""
    if endpoint.owner_token_id is None:
        return SYSTEM
    token = db.session.get(ApiToken, endpoint.owner_token_id)
    if token is None or token.revoked_at is not None:
        return None
    return Caller(
        token_id=token.id, name=token.name, role=token.role, site_ids=frozenset(token.site_ids)
    )


# ---------------------------------------------------------------------------
# Events
# ---------------------------------------------------------------------------


def _endpoints_wanting(*events: str) -> list[WebhookEndpoint]:
    endpoints = db.session.execute(
        select(WebhookEndpoint)
        .where(WebhookEndpoint.deleted_at.is_(None), WebhookEndpoint.disabled_at.is_(None))
        .order_by(WebhookEndpoint.id)
    ).scalars()
    return [e for e in endpoints if set(e.events) & set(events)]


def summary_ready(summary: Summary) -> None:
    """A summary became ready: `summary.ready`, and a `flag.raised` for each flag new
    since the previous ready summary, for each endpoint that wants them (flushed)."""
    endpoints = _endpoints_wanting("summary.ready", "flag.raised")
    if not endpoints:
        return
    document = summary.document or {}
    previous = _previous_document(summary)
    earlier = {_flag_key(f) for f in previous.get("flags", [])} if previous is not None else set()
    new_flags = [f for f in document.get("flags", []) if _flag_key(f) not in earlier]
    now = utcnow()
    threshold = setting("SMALL_CELL_THRESHOLD")
    for endpoint in endpoints:
        owner = _owner(endpoint)
        if owner is None:
            continue
        seen = visibility.summary_seen(
            suppression.view(document, owner.sees_exact_figures, threshold), owner.group_view
        )
        site_ids = list(endpoint.site_ids) or None
        if "summary.ready" in endpoint.events:
            data = _summary_data(summary) | {"site_ids": endpoint.site_ids}
            for fmt in endpoint.formats:
                if fmt == "json":
                    data["json"] = suppression.restricted(seen, site_ids)
                else:
                    data[fmt] = to_csv(seen, site_ids, hxl=fmt == "hxl", threshold=threshold)
            _create(endpoint, "summary.ready", str(summary.id), summary.id, data, now)
        if "flag.raised" in endpoint.events:
            for flag in new_flags:
                if site_ids is not None and flag.get("site_id") not in site_ids:
                    continue
                shown = _flag_as_seen(flag, seen)
                if shown is None:
                    continue
                subject = f"{summary.id}:{_flag_key(flag)}"
                data = _summary_data(summary) | {"flag": shown}
                _create(endpoint, "flag.raised", subject, summary.id, data, now)
    db.session.flush()


def summary_failed(summary_id: uuid.UUID) -> None:
    """A summary's build failed for good: `summary.failed` to the endpoints wanting it."""
    summary = db.session.get(Summary, summary_id, populate_existing=True)
    if summary is None or summary.status is not SummaryStatus.failed:
        return
    now = utcnow()
    for endpoint in _endpoints_wanting("summary.failed"):
        if _owner(endpoint) is None:
            continue
        data = _summary_data(summary) | {"error": FAILED_SUMMARY}
        _create(endpoint, "summary.failed", str(summary.id), summary.id, data, now)
    db.session.flush()


def _summary_data(summary: Summary) -> dict[str, Any]:
    base = setting("PUBLIC_BASE_URL")
    link = f"{base}/api/v1/summaries/{summary.id}"
    return {
        "summary_id": str(summary.id),
        "as_of": _iso(summary.as_of),
        "links": {"self": link, "csv": f"{link}?format=csv", "hxl": f"{link}?format=hxl"},
    }


def _flag_key(flag: dict[str, Any]) -> str:
    return ":".join(str(flag.get(k) or "") for k in ("site_id", "code", "group_id"))


def _flag_as_seen(flag: dict[str, Any], seen: dict[str, Any]) -> dict[str, Any] | None:
    """The flag as the owner sees it (a reader: no group's id or figures), or None when
    the owner's view leaves it out."""
    for candidate in seen.get("flags", []):
        same = all(candidate.get(k) == flag.get(k) for k in ("site_id", "code"))
        if same and candidate.get("group_id") in (None, flag.get("group_id")):
            return candidate
    return None


def _previous_document(summary: Summary) -> dict[str, Any] | None:
    previous = db.session.execute(
        select(Summary.document)
        .where(
            Summary.status == SummaryStatus.ready,
            Summary.as_of < summary.as_of,
            Summary.id != summary.id,
        )
        .order_by(Summary.as_of.desc())
        .limit(1)
    ).scalar_one_or_none()
    return previous


def _create(
    endpoint: WebhookEndpoint,
    event: str,
    subject: str,
    summary_id: uuid.UUID | None,
    data: dict[str, Any],
    now: datetime,
) -> None:
    """The delivery of one event to one endpoint, unless it exists already (the unique
    key decides between racing creators: insert ... on conflict do nothing)."""
    values = {
        "id": uuid.uuid4(),
        "message_id": f"msg_{uuid.uuid4().hex}",
        "endpoint_id": endpoint.id,
        "event_type": event,
        "subject": subject,
        "summary_id": summary_id,
        "payload": {"type": event, "timestamp": _iso(now), "data": data},
        "status": WebhookDeliveryStatus.queued,
        "attempts": 0,
        "created_at": now,
        # Not handed out yet: the next sweep (right after the build commits) does.
        "next_attempt_at": None,
    }
    dialect = postgresql if db.engine.dialect.name == "postgresql" else sqlite
    statement = (
        dialect.insert(WebhookDelivery)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["endpoint_id", "event_type", "subject"])
    )
    db.session.execute(statement)


# ---------------------------------------------------------------------------
# Handing out
# ---------------------------------------------------------------------------


def due(now: datetime | None = None) -> list[uuid.UUID]:
    """Deliveries to hand out: never handed out, or whose task seems lost (the broker,
    a dead worker). Marked handed out now, so the next sweep leaves them for LOST_AFTER."""
    now = now or utcnow()
    condition = (
        WebhookDelivery.status.in_(ACTIVE),
        or_(WebhookDelivery.claimed_until.is_(None), WebhookDelivery.claimed_until < now),
        or_(
            WebhookDelivery.next_attempt_at.is_(None),
            WebhookDelivery.next_attempt_at < now - LOST_AFTER,
        ),
    )
    ids = list(db.session.execute(select(WebhookDelivery.id).where(*condition)).scalars())
    if ids:
        db.session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id.in_(ids), *condition)
            .values(next_attempt_at=now)
            .execution_options(synchronize_session=False)
        )
    return ids


def not_handed_out(delivery_ids: list[uuid.UUID]) -> None:
    """The broker did not take these: the next sweep hands them out."""
    if delivery_ids:
        db.session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id.in_(delivery_ids))
            .values(next_attempt_at=None)
            .execution_options(synchronize_session=False)
        )


# ---------------------------------------------------------------------------
# Attempts
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    """One attempt's request: where to, the body and the signed headers."""

    delivery_id: uuid.UUID
    url: str
    body: bytes
    headers: dict[str, str]


@dataclass(frozen=True)
class Answer:
    """What the receiver did: its status code, or the error that stopped the request
    (`temporary`: a timeout or a connection that failed, worth trying again)."""

    duration_ms: int
    status: int | None = None
    error: str | None = None
    temporary: bool = False


def _claim() -> timedelta:
    # Longer than one attempt can take: connecting, then answering, with room to spare.
    return timedelta(seconds=CONNECT_TIMEOUT_SECONDS + setting("WEBHOOK_TIMEOUT_SECONDS") + 60)


def begin(delivery_id: uuid.UUID, now: datetime | None = None) -> Message | Outcome:
    """Lease the delivery and count the attempt: the Message to send, or the Outcome
    when there is nothing to send. Safe to run twice, or at once in two workers."""
    now = now or utcnow()
    leased = db.session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == delivery_id,
            WebhookDelivery.status.in_(ACTIVE),
            or_(WebhookDelivery.claimed_until.is_(None), WebhookDelivery.claimed_until < now),
            or_(
                WebhookDelivery.next_attempt_at.is_(None),
                WebhookDelivery.next_attempt_at <= now + EARLY,
            ),
        )
        .values(
            claimed_until=now + _claim(),
            status=WebhookDeliveryStatus.delivering,
            attempts=WebhookDelivery.attempts + 1,
        )
        .execution_options(synchronize_session=False)
    ).rowcount
    if not leased:
        return Outcome("skipped")
    delivery = db.session.get_one(WebhookDelivery, delivery_id, populate_existing=True)
    endpoint = db.session.get_one(WebhookEndpoint, delivery.endpoint_id)
    stopped = None
    if endpoint.deleted_at is not None:
        stopped = "The webhook was deleted before it was delivered."
    elif endpoint.disabled_at is not None:
        stopped = "The webhook was disabled before it was delivered."
    elif _owner(endpoint) is None:
        stopped = "The token that registered the webhook was revoked."
    if stopped is not None:
        delivery.attempts -= 1  # nothing was tried
        return _end(delivery, WebhookDeliveryStatus.failed, stopped, counts=False)
    if delivery.attempts > len(setting("WEBHOOK_RETRY_SCHEDULE")) + 1:
        # Tries that never came to an outcome (a worker killed in each of them).
        delivery.attempts -= 1
        error = f"Gave up after {delivery.attempts} attempts. {delivery.last_error or ''}"
        return _end(delivery, WebhookDeliveryStatus.failed, error.strip())
    body = _body(delivery.payload)
    sign_secrets = signing_secrets(endpoint, now)
    headers = {
        "webhook-id": delivery.message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": " ".join(
            Webhook(secret).sign(delivery.message_id, now, body) for secret in sign_secrets
        ),
        "content-type": "application/json",
        "user-agent": "needs-tracker-webhooks",
    }
    return Message(delivery.id, endpoint.url, body, headers)


def _body(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def finish(message: Message, answer: Answer, now: datetime | None = None) -> Outcome:
    """Record the attempt and what it means: delivered, a retry, or failed for good."""
    now = now or utcnow()
    delivery = db.session.get_one(WebhookDelivery, message.delivery_id, populate_existing=True)
    db.session.add(
        WebhookAttempt(
            delivery_id=delivery.id,
            attempted_at=now,
            duration_ms=answer.duration_ms,
            response_code=answer.status,
            error=answer.error[:1000] if answer.error else None,
        )
    )
    delivery.last_response_code = answer.status
    status = answer.status
    if status is not None and 200 <= status < 300:
        delivery.delivered_at = now
        endpoint = db.session.get_one(WebhookEndpoint, delivery.endpoint_id)
        endpoint.consecutive_failures = 0
        log.info(
            "webhook delivered",
            extra={"webhook_delivery_id": str(delivery.id), "attempts": delivery.attempts},
        )
        return _end(delivery, WebhookDeliveryStatus.delivered, None)
    if status is not None:
        error = f"The receiver answered {status}."
        if 300 <= status < 400:
            error = f"The receiver answered {status}, a redirect; redirects are not followed."
        temporary = status in (408, 429) or status >= 500
    else:
        error, temporary = answer.error or "The request failed.", answer.temporary
    if not temporary:
        return _end(delivery, WebhookDeliveryStatus.failed, error)
    schedule = setting("WEBHOOK_RETRY_SCHEDULE")
    if delivery.attempts > len(schedule):
        return _end(
            delivery,
            WebhookDeliveryStatus.failed,
            f"Gave up after {delivery.attempts} attempts. {error}",
        )
    delay = int(schedule[delivery.attempts - 1])
    delivery.status = WebhookDeliveryStatus.retrying
    delivery.last_error = error
    delivery.next_attempt_at = now + timedelta(seconds=delay)
    delivery.claimed_until = None
    db.session.flush()
    log.warning(
        "webhook will be retried",
        extra={
            "webhook_delivery_id": str(delivery.id),
            "attempts": delivery.attempts,
            "retry_in": delay,
        },
    )
    return Outcome(WebhookDeliveryStatus.retrying.value, delay)


def _end(
    delivery: WebhookDelivery, status: WebhookDeliveryStatus, error: str | None, counts: bool = True
) -> Outcome:
    delivery.status = status
    delivery.last_error = error
    delivery.claimed_until = None
    delivery.next_attempt_at = None
    if status is WebhookDeliveryStatus.failed and counts:
        _failed_for_good(delivery, error or "")
    db.session.flush()
    return Outcome(status.value)


def _failed_for_good(delivery: WebhookDelivery, reason: str) -> None:
    """Count a delivery failed for good; WEBHOOK_DISABLE_AFTER in a row disable the endpoint."""
    endpoint = db.session.get_one(WebhookEndpoint, delivery.endpoint_id)
    endpoint.consecutive_failures += 1
    log.warning(
        "webhook delivery failed",
        extra={"webhook_delivery_id": str(delivery.id), "attempts": delivery.attempts},
    )
    limit = setting("WEBHOOK_DISABLE_AFTER")
    if endpoint.disabled_at is None and endpoint.consecutive_failures >= limit:
        before = endpoint_state(endpoint)
        endpoint.disabled_at = utcnow()
        endpoint.disabled_reason = (
            f"{endpoint.consecutive_failures} deliveries in a row failed; the last: {reason}"
        )[:1000]
        db.session.flush()
        audit.record(
            SYSTEM,
            "webhook.disable",
            "webhook",
            endpoint.id,
            before=before,
            after=endpoint_state(endpoint),
        )
        log.warning(
            "webhook disabled",
            extra={"webhook_id": str(endpoint.id), "failures": endpoint.consecutive_failures},
        )
