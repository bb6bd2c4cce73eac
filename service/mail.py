"""Situation reports as email: rendered from a summary, sent by SMTP or kept in the outbox.

The message has a plain-text and an HTML part (Jinja2 templates under
`service/templates/email/`), the summary's CSV (and HXL) for the subscription's sites
attached, and RFC 8058 one-click unsubscribe headers. Everything that reaches a header
is either ours (numbers, dates, ids) or was validated when the subscription was made.

With no SMTP_HOST the message is written to `$INSTANCE_PATH/outbox/` as an .eml file,
so a new user sees what would be sent with no mail server at all.
"""

from __future__ import annotations

import logging
import os
import smtplib
import ssl
import tempfile
import zoneinfo
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any

from flask import current_app, render_template
from flask_babel import force_locale, ngettext
from flask_babel import gettext as _

from service import i18n
from service.domain import suppression, visibility
from service.domain.callers import RECIPIENT
from service.domain.deliveries import Letter, NotSent, Sent
from service.domain.exports import to_csv
from service.types import utcnow

log = logging.getLogger(__name__)

TOP_NEEDS = 3
HEADERS_POLICY = policy.SMTP.clone(max_line_length=998)


class TemporaryFailure(Exception):
    """The server could not take the message now (4xx, refused, timed out): try again."""


class PermanentFailure(Exception):
    """The server refused the message for good (5xx for the recipient): do not retry."""


@dataclass(frozen=True)
class Outgoing:
    """What a delivery sends: the message, its envelope, and a stable name for the outbox."""

    message: EmailMessage
    sender: str
    recipient: str
    name: str


# ---------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------


# Everything below writes in the language being rendered (the subscription's, forced by
# `compose`): words by gettext, numbers and month names by Babel.


def _when(moment: datetime) -> str:
    """'27 Sep 2023, 14:00', '27 сент. 2023, 14:00' (in the moment's own time zone)."""
    return i18n.moment(moment, "d MMM y, HH:mm")


def _number(number: int | float | str) -> str:
    # A suppressed figure comes as its mark ("< 5", "suppressed").
    return i18n.number(number)


def _count(number: int | str) -> int:
    """The number a plural form is chosen by; a suppressed figure ("< 5") reads as many."""
    return number if isinstance(number, int) else 10


def _signed(number: int | str) -> str:
    if isinstance(number, str):
        return i18n.number(number)
    return i18n.signed(number) if number else _("no change")


def _kcal(kcal: float) -> str:
    if kcal >= 1e6:
        return _("%(number)s million kcal", number=i18n.number(kcal / 1e6, decimals=1))
    return _("%(number)s kcal", number=i18n.number(round(kcal)))


def _needs_line(needs: dict[str, Any]) -> str:
    if needs["water_litres_per_day"] is None:
        return _("suppressed (a small site)")
    latrines = needs["latrines"]
    return _(
        "water %(litres)s L, food %(food)s, covered space %(space)s m², %(latrines)s latrines",
        litres=i18n.number(round(needs["water_litres_per_day"])),
        food=_kcal(needs["food_kcal_per_day"]),
        space=i18n.number(round(needs["covered_space_m2"])),
        latrines=_("suppressed") if latrines is None else i18n.number(latrines),
    )


def _top_need(need: dict[str, Any]) -> str:
    return ngettext(
        "%(sector)s (severity %(severity)s, %(num)s group)",
        "%(sector)s (severity %(severity)s, %(num)s groups)",
        need["groups"],
        sector=i18n.sector(need["sector"]),
        severity=need["highest_severity"],
    )


def _figure(entry: dict[str, Any], path: str, threshold: int) -> int | str:
    """A figure, or its mark when suppressed for email recipients."""
    return suppression.mark(entry, path, threshold) or suppression.shown(entry, *path.split("."))


def report_context(
    view: dict[str, Any], all_sites: bool, zone: str, threshold: int
) -> dict[str, Any]:
    """The numbers an email shows (a reader's view over the subscription's sites, small
    cells suppressed), times in its time zone."""
    tz = zoneinfo.ZoneInfo(zone)
    as_of = datetime.fromisoformat(view["as_of"]).astimezone(tz)
    previous = view.get("previous_as_of")
    sites = view["sites"]
    rows = []
    for site in sorted(sites, key=lambda s: (-(s["people"] or 0), s["name"])):
        change = _figure(site, "change_since_previous", threshold)
        rows.append(
            {
                "site_id": site["site_id"],
                "name": site["name"],
                "people": _figure(site, "people", threshold),
                "groups": site["groups"],
                "change": change,
                "change_text": _signed(change),
                "capacity": site.get("capacity"),
                "departed": {
                    "groups": site["departures"]["groups"],
                    "people": _figure(site, "departures.people", threshold),
                },
                "top_needs": [_top_need(need) for need in site["reported_needs"][:TOP_NEEDS]],
                "sphere": _needs_line(site["needs"]),
                "flags": [i18n.flag_message(flag["message"]) for flag in site["flags"]],
            }
        )
    totals = view["totals"]
    change = _figure(totals, "change_since_previous", threshold)
    return {
        "as_of": _when(as_of),
        "zone": zone,
        "zone_abbreviation": as_of.strftime("%Z"),
        "previous_as_of": _when(datetime.fromisoformat(previous).astimezone(tz))
        if previous
        else None,
        "generated_at": _when(datetime.fromisoformat(view["generated_at"]).astimezone(tz)),
        "totals": {
            "people": _figure(totals, "people", threshold),
            "groups": sum(s["groups"] for s in sites),
            "sites": len(sites),
            "sites_with_groups": sum(1 for s in sites if s["groups"]),
            "change": change,
            "change_text": _signed(change),
            "departed_people": _figure(totals, "departures.people", threshold),
            "departed_groups": sum(s["departures"]["groups"] for s in sites),
            "flags": sum(len(s["flags"]) for s in sites),
        },
        "all_sites": all_sites,
        "sites": rows,
    }


def subject(context: dict[str, Any]) -> str:
    people = context["totals"]["people"]
    return ngettext(
        "Situation %(moment)s %(zone)s: %(people)s person waiting",
        "Situation %(moment)s %(zone)s: %(people)s people waiting",
        _count(people),
        moment=context["as_of"],
        zone=context["zone_abbreviation"],
        people=_number(people),
    )


def _stamp(moment: datetime) -> str:
    # The same file name as GET /api/v1/summaries/{id}?format=csv gives.
    return moment.strftime("%Y%m%dT%H%MZ")


def send(letter: Letter) -> Sent | NotSent:
    """Compose the letter's email and send it (SMTP) or keep it (outbox)."""
    try:
        outgoing = compose(letter)
    except Exception as exc:
        log.exception("email could not be composed", extra={"delivery_id": str(letter.delivery_id)})
        return NotSent(f"The email could not be composed ({type(exc).__name__}).", permanent=True)
    try:
        where = deliver(outgoing)
    except PermanentFailure as exc:
        return NotSent(str(exc), permanent=True, refused=True)
    except TemporaryFailure as exc:
        return NotSent(str(exc), permanent=False)
    return Sent(outgoing.message["Message-ID"], "smtp" if where == "smtp" else "outbox")


def compose(letter: Letter) -> Outgoing:
    """The situation report email for one delivery, in its subscription's language."""
    config = current_app.config
    # Email recipients are readers: small cells suppressed, in the text and the CSV, and
    # no single group's id or figures.
    threshold = config["SMALL_CELL_THRESHOLD"]
    seen = visibility.summary_seen(
        suppression.for_readers(letter.document, threshold), RECIPIENT.group_view
    )
    with force_locale(letter.language):
        return _compose(letter, seen, threshold)


def _compose(letter: Letter, seen: dict[str, Any], threshold: int) -> Outgoing:
    """The message, written in the language `compose` forced."""
    delivery_id = str(letter.delivery_id)
    email, site_ids = letter.email, letter.site_ids
    summary_id, unsubscribe_url = letter.summary_id, letter.unsubscribe_url
    config = current_app.config
    base = config["PUBLIC_BASE_URL"]
    context = report_context(
        suppression.restricted(seen, site_ids or None), not site_ids, letter.zone, threshold
    )
    context.update(
        language=i18n.current_language(),
        count=_count,
        summary_url=f"{base}/api/v1/summaries/{summary_id}",
        csv_url=f"{base}/api/v1/summaries/{summary_id}?format=csv",
        unsubscribe_url=unsubscribe_url,
        email=email,
        cron=letter.cron,
        site_ids=site_ids,
        number=_number,
    )
    context["subject"] = subject(context)
    sender = config["MAIL_FROM"]
    message = EmailMessage(policy=policy.SMTP)
    message["Subject"] = context["subject"]
    message["From"] = Address("needs-tracker", addr_spec=sender)
    message["To"] = Address(addr_spec=email)
    message["Date"] = format_datetime(utcnow())
    message["Message-ID"] = f"<{delivery_id}@{sender.rpartition('@')[2] or 'localhost'}>"
    # RFC 8058: mail clients offer "unsubscribe" and POST to the link with one click.
    message["List-Unsubscribe"] = f"<{unsubscribe_url}>"
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    # RFC 3834: no auto-replies (out of office) to a machine's message.
    message["Auto-Submitted"] = "auto-generated"
    # Quoted-printable: 7-bit clean whatever the site names hold, so no server needs 8BITMIME.
    message.set_content(render_template("email/report.txt", **context), cte="quoted-printable")
    message.add_alternative(
        render_template("email/report.html", **context), subtype="html", cte="quoted-printable"
    )
    stamp = _stamp(letter.summary_as_of)
    for fmt in letter.formats:
        body = to_csv(seen, site_ids=site_ids or None, hxl=fmt == "hxl", threshold=threshold)
        message.add_attachment(
            body.encode("utf-8"),
            maintype="text",
            subtype="csv",
            filename=f"summary-{stamp}.{'hxl.csv' if fmt == 'hxl' else 'csv'}",
            params={"charset": "utf-8"},
        )
    # Written out with header lines up to SMTP's limit (998) instead of 78: folding the
    # List-Unsubscribe URL, which has no space to fold at, would turn it into RFC 2047
    # encoded words that no mail client reads as a link. The parts above are already
    # encoded (quoted-printable lines stay within 76 characters).
    message.policy = HEADERS_POLICY
    return Outgoing(
        message=message,
        sender=sender,
        recipient=email,
        name=f"{letter.scheduled_for:%Y%m%dT%H%M%SZ}-{delivery_id}",
    )


# ---------------------------------------------------------------------------
# Transport
# ---------------------------------------------------------------------------


def deliver(outgoing: Outgoing) -> str:
    """Send the message (SMTP) or keep it (outbox); returns where it went."""
    if current_app.config["SMTP_HOST"]:
        _smtp(outgoing)
        return "smtp"
    return str(_outbox(outgoing))


def outbox_folder() -> Path:
    return Path(current_app.config["INSTANCE_PATH"]) / "outbox"


def _outbox(outgoing: Outgoing) -> Path:
    """Write the .eml atomically, named for the delivery: a second try replaces it."""
    folder = outbox_folder()
    path = folder / f"{outgoing.name}.eml"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=folder, prefix=".", suffix=".eml.tmp")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(outgoing.message.as_bytes())
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    except OSError as exc:  # a full disk, a folder it may not write: try again later
        raise TemporaryFailure(f"Could not write to the outbox: {exc.strerror}.") from None
    return path


def _smtp(outgoing: Outgoing) -> None:
    config = current_app.config
    timeout = config["SMTP_TIMEOUT_SECONDS"]
    try:
        connection = smtplib.SMTP(config["SMTP_HOST"], config["SMTP_PORT"], timeout=timeout)
    except (OSError, smtplib.SMTPException) as exc:
        raise TemporaryFailure(_describe(exc, "connecting to the SMTP server")) from None
    try:
        connection.ehlo()
        if config["SMTP_STARTTLS"]:
            connection.starttls(context=ssl.create_default_context())
            connection.ehlo()
        if config["SMTP_USERNAME"]:
            connection.login(config["SMTP_USERNAME"], config["SMTP_PASSWORD"] or "")
        connection.send_message(
            outgoing.message, from_addr=outgoing.sender, to_addrs=[outgoing.recipient]
        )
    except smtplib.SMTPRecipientsRefused as exc:
        code, reply = next(iter(exc.recipients.values()))
        text = f"The server refused the recipient: {code} {_reply(reply)}"
        raise (PermanentFailure if code >= 500 else TemporaryFailure)(text) from None
    except smtplib.SMTPDataError as exc:
        text = f"The server refused the message: {exc.smtp_code} {_reply(exc.smtp_error)}"
        raise (PermanentFailure if exc.smtp_code >= 500 else TemporaryFailure)(text) from None
    except smtplib.SMTPAuthenticationError as exc:
        # Not the server's text: some echo back what they were sent.
        raise TemporaryFailure(f"The SMTP login was refused ({exc.smtp_code}).") from None
    except (OSError, smtplib.SMTPException) as exc:
        raise TemporaryFailure(_describe(exc, "talking to the SMTP server")) from None
    finally:
        _close(connection)


def _close(connection: smtplib.SMTP) -> None:
    """Say goodbye; the message is already accepted, so a failure here changes nothing."""
    try:
        connection.quit()
    except (OSError, smtplib.SMTPException):
        connection.close()


def _reply(reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    return _scrub(" ".join(text.split()))[:300]


def _describe(exc: BaseException, doing: str) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        detail = f"{exc.smtp_code} {_reply(exc.smtp_error)}"
    elif isinstance(exc, TimeoutError):
        detail = "timed out"
    else:
        detail = _scrub(str(exc))[:300] or type(exc).__name__
    return f"{type(exc).__name__} while {doing}: {detail}"


def _scrub(text: str) -> str:
    """Never let the SMTP password or login into a stored error or a log line."""
    for secret in (current_app.config["SMTP_PASSWORD"], current_app.config["SMTP_USERNAME"]):
        if secret:
            text = text.replace(secret, "***")
    return text
