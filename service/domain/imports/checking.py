"""Checking one row of an import: the same field rules as `POST /api/v1/reports` (the
API's own field classes) and the same counting rules (`reports.check_rules`)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from marshmallow import ValidationError

from service.api.fields import Count, Moment, SiteId, Text
from service.domain.imports.reading import GROUP_COLUMNS
from service.domain.reports import check_rules, request_fingerprint
from service.models import NEEDS_SECTORS, SADD_KEYS, VULNERABLE_KEYS

# The API's own field classes, so a CSV cell passes exactly when the JSON value would.
_MOMENT = Moment()
_SITE = SiteId()
_LABEL = Text(max_length=200)
_NOTE = Text(max_length=2000, multiline=True, allow_none=True)
_NEED_NOTE = Text(max_length=1000, multiline=True, allow_none=True)
_INTEGER = re.compile(r"[+-]?\d{1,15}")
_SECTORS = ", ".join(NEEDS_SECTORS)
MISSING = "Missing data for required field."
MAX_NEEDS = len(NEEDS_SECTORS) * 5  # as ReportIn.needs


@dataclass
class Row:
    number: int
    key: str
    fingerprint: str
    client_id: str | None
    data: dict[str, Any]
    group_id: uuid.UUID | None
    site_id: str | None
    group_label: str | None


def _messages(exc: ValidationError) -> list[str]:
    messages = exc.messages
    if isinstance(messages, dict):
        return [str(m) for value in messages.values() for m in value]
    return [str(m) for m in messages]


# The hot cells are checked here without marshmallow's per-call overhead, with the same
# rules and messages as the API's fields (tests/test_imports.py holds the two together).
_COUNT_MAX = Count.MAXIMUM
_TOO_BIG = f"Must be at most {_COUNT_MAX:,}."


def _count(raw: str) -> int:
    text = raw.strip()
    if not _INTEGER.fullmatch(text):
        raise ValidationError("Not a valid integer.")
    number = int(text)
    if number < 0:
        raise ValidationError("Must be 0 or more.")
    if number > _COUNT_MAX:
        raise ValidationError(_TOO_BIG)
    return number


def _uuid(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw.strip())
    except ValueError:
        raise ValidationError("Not a valid UUID.") from None


def _moment(raw: str) -> datetime:
    """As the API's Moment (marshmallow reads ISO 8601 with `datetime.fromisoformat`); what
    the quick path does not take goes to the field itself, for its exact answer."""
    try:
        moment = datetime.fromisoformat(raw.strip())
        if moment.tzinfo is not None and moment.utcoffset() is not None:
            return moment.astimezone(UTC)
    except (ValueError, OverflowError):
        pass
    return _MOMENT.deserialize(raw.strip())


def _memo(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """For cells that repeat (site ids, labels): check each distinct value once."""
    seen: dict[str, tuple[bool, Any]] = {}

    def check(raw: str) -> Any:
        if raw not in seen:
            if len(seen) > 10000:
                seen.clear()
            try:
                seen[raw] = (True, parse(raw))
            except ValidationError as exc:
                seen[raw] = (False, exc)
        ok, value = seen[raw]
        if not ok:
            raise value
        return value

    return check


_site_id = _memo(lambda raw: _SITE.deserialize(raw.strip()))
_label = _memo(_LABEL.deserialize)


def _parse_needs(raw: str, errors: list[tuple[str, str]]) -> list[dict[str, Any]]:
    items = [item for item in raw.split(";") if item.strip()]
    if len(items) > MAX_NEEDS:
        errors.append(("needs", f"Longer than maximum length {MAX_NEEDS}."))
        return []
    needs = []
    for index, item in enumerate(items):
        sector, _, rest = item.partition(":")
        severity, _, note = rest.partition(":")
        sector = sector.strip()
        name = f"needs.{index}"
        if not rest:
            errors.append((name, "Write a need as sector:severity (e.g. water:4), ';' between."))
            continue
        need: dict[str, Any] = {"sector": sector}
        if sector not in NEEDS_SECTORS:
            errors.append((f"{name}.sector", f"Must be one of: {_SECTORS}."))
        text = severity.strip()
        if not _INTEGER.fullmatch(text):
            errors.append((f"{name}.severity", "Not a valid integer."))
        elif not 1 <= int(text) <= 5:
            errors.append(
                (
                    f"{name}.severity",
                    "Must be greater than or equal to 1 and less than or equal to 5.",
                )
            )
        else:
            need["severity"] = int(text)
        if note.strip():
            try:
                need["note"] = _NEED_NOTE.deserialize(note)
            except ValidationError as exc:
                errors.extend((f"{name}.note", m) for m in _messages(exc))
        needs.append(need)
    return needs


def parse_row(number: int, cells: dict[str, str], now: datetime) -> Row | list[tuple[str, str]]:
    """A row's report (with its key and fingerprint), or its errors as (field, message)."""
    if "" in cells:
        return [("", f"The row has more cells than the header: {cells['']}.")]
    errors: list[tuple[str, str]] = []
    data: dict[str, Any] = {}
    # The cells with something in them (most are empty in most files).
    present = {name: value for name, value in cells.items() if value and not value.isspace()}

    def take(
        name: str, parse: Callable[[str], Any], *, required: bool = False, as_field: str = ""
    ) -> Any:
        raw = present.get(name)
        if raw is None:
            if required:
                errors.append((as_field or name, MISSING))
            return None
        try:
            return parse(raw)
        except ValidationError as exc:
            errors.extend((as_field or name, m) for m in _messages(exc))
            return None

    client_id = take("client_id", _uuid)
    group_id = take("group_id", _uuid)
    label = take("group_label", _label)
    site_id = take("site_id", _site_id)
    if group_id is None and label is None and not any(name in present for name in GROUP_COLUMNS):
        errors.append(("group_id", "Give the group's group_id, or its group_label and site_id."))
    elif group_id is not None and label is not None:
        errors.append(("group_label", "Give group_id or group_label, not both."))
    elif label is not None and site_id is None and "site_id" not in present:
        errors.append(("site_id", MISSING))

    observed_at = take("observed_at", _moment, required=True)
    total = take("total", _count, required=True)

    sadd = None
    if any(key in present for key in SADD_KEYS):
        sadd = {key: take(key, _count, required=True, as_field=f"sadd.{key}") for key in SADD_KEYS}
    vulnerable = {}
    for key in VULNERABLE_KEYS:
        if key in present:
            value = take(key, _count, as_field=f"vulnerable.{key}")
            if value is not None:
                vulnerable[key] = value
    raw_needs = present.get("needs")
    needs = _parse_needs(raw_needs, errors) if raw_needs is not None else []
    note = take("note", _NOTE.deserialize) if "note" in present else None

    if errors:
        return errors
    data["observed_at"] = observed_at
    data["total"] = total
    if sadd is not None:
        data["sadd"] = sadd
    if vulnerable:
        data["vulnerable"] = vulnerable
    if needs:
        data["needs"] = needs
    if note is not None:
        data["note"] = note
    rule_errors = check_rules(data, now)
    if rule_errors:
        return [(e["field"], e["message"]) for e in rule_errors]
    if group_id is not None:
        data["group_id"] = group_id
    else:
        data["site_id"] = site_id
        data["group_label"] = label
    fingerprint = request_fingerprint(data)
    key = str(client_id) if client_id is not None else f"import:{fingerprint}"
    return Row(
        number=number,
        key=key,
        fingerprint=fingerprint,
        client_id=str(client_id) if client_id is not None else None,
        data=data,
        group_id=group_id,
        site_id=site_id,
        group_label=label,
    )
