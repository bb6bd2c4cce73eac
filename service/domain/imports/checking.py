"""Checking one row of an import: the same field rules as `POST /api/v1/reports` (the
API's own field classes) and the same counting rules (`reports.check_rules`)."""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from marshmallow import ValidationError

from service.api.fields import Count, Moment, SiteId, Text
from service.domain.imports.reading import GROUP_COLUMNS
from service.domain.reports import EARLIEST_OBSERVATION, check_rules, request_fingerprint
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
    client = str(client_id) if client_id is not None else None
    return _row(number, client, data, group_id, site_id, label, request_fingerprint)


def _row(
    number: int,
    client_id: str | None,
    data: dict[str, Any],
    group_id: uuid.UUID | None,
    site_id: str | None,
    label: str | None,
    fingerprint_of: Callable[[dict[str, Any]], str],
) -> Row:
    """The Row of a sound report: named by its group, keyed by its client_id or content."""
    if group_id is not None:
        data["group_id"] = group_id
    else:
        data["site_id"] = site_id
        data["group_label"] = label
    fingerprint = fingerprint_of(data)
    return Row(
        number=number,
        key=client_id if client_id is not None else f"import:{fingerprint}",
        fingerprint=fingerprint,
        client_id=client_id,
        data=data,
        group_id=group_id,
        site_id=site_id,
        group_label=label,
    )


# ---------------------------------------------------------------------------------------
# The quick path
# ---------------------------------------------------------------------------------------
# Most rows come as a spreadsheet writes them: lowercase UUIDs, plain digits, ISO 8601
# moments with a zone, known sectors. `quick_row` takes such a row with str methods and
# precompiled patterns, about three times faster than `parse_row`; any cell it is not sure
# of sends the whole row to `parse_row`, which has the API's fields word the errors. It
# never takes a row `parse_row` refuses and it builds the same Row, fingerprint included
# (tests/test_import_checking.py holds the two together).

_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_COUNT_DIGITS = len(str(Count.MAXIMUM))
_SEVERITIES = {str(n): n for n in range(1, 6)}
_SECTOR_NAMES = frozenset(NEEDS_SECTORS)
_group_uuid = _memo(uuid.UUID)
_quote = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]


def _quick_count(raw: str) -> int | None:
    if raw.isdigit() and raw.isascii() and len(raw) <= _COUNT_DIGITS:
        number = int(raw)
        if number <= Count.MAXIMUM:
            return number
    return None


def quick_row(number: int, cells: dict[str, str], latest: datetime) -> Row | None:
    """The row's Row when every cell is in its plain form and the report is sound, else
    None (then `parse_row` decides). `latest` is now plus the clock skew allowed."""
    if "" in cells:
        return None
    get = cells.get
    client_id = get("client_id") or None
    if client_id is not None and not _CANONICAL_UUID.fullmatch(client_id):
        return None
    raw_group, raw_label, raw_site = get("group_id"), get("group_label"), get("site_id")
    group_id = label = site_id = None
    try:
        if raw_group:
            if raw_label or not _CANONICAL_UUID.fullmatch(raw_group):
                return None
            group_id = _group_uuid(raw_group)
        elif raw_label and raw_site:
            label = _label(raw_label)
        else:
            return None
        if raw_site:
            site_id = _site_id(raw_site)
    except ValidationError:
        return None

    try:
        observed_at = datetime.fromisoformat(get("observed_at") or "")
        if observed_at.utcoffset() is None:
            return None
        observed_at = observed_at.astimezone(UTC)
    except (ValueError, OverflowError):
        return None
    # reports.check_rules, inline: not in the future, not before 2000 ...
    if observed_at > latest or observed_at < EARLIEST_OBSERVATION:
        return None
    total = _quick_count(get("total") or "")
    if total is None:
        return None
    data: dict[str, Any] = {"observed_at": observed_at, "total": total}

    raw_sadd = [get(key) or "" for key in SADD_KEYS]
    if any(raw_sadd):
        # All eight, each plain digits: one check over the eight cells joined.
        digits = "".join(raw_sadd)
        if (
            "" in raw_sadd
            or not (digits.isdigit() and digits.isascii())
            or max(map(len, raw_sadd)) > _COUNT_DIGITS
        ):
            return None
        values = list(map(int, raw_sadd))
        if max(values) > Count.MAXIMUM:
            return None
        if sum(values) != total:  # ... the breakdown adds up to the total ...
            return None
        data["sadd"] = dict(zip(SADD_KEYS, values, strict=True))
    vulnerable = {}
    for key in VULNERABLE_KEYS:
        raw = get(key)
        if raw:
            value = _quick_count(raw)
            if value is None or value > total:  # ... and no vulnerability exceeds it.
                return None
            vulnerable[key] = value
    if vulnerable:
        data["vulnerable"] = vulnerable
    raw_needs = get("needs")
    if raw_needs:
        needs = []
        for item in raw_needs.split(";"):
            sector, _, severity = item.partition(":")
            level = _SEVERITIES.get(severity)
            if level is None or sector not in _SECTOR_NAMES:
                return None
            needs.append({"sector": sector, "severity": level})
        if len(needs) > MAX_NEEDS:
            return None
        data["needs"] = needs
    raw_note = get("note")
    if raw_note:
        try:
            note = _NOTE.deserialize(raw_note)
        except ValidationError:
            return None
        if note is not None:
            data["note"] = note
    return _row(number, client_id, data, group_id, site_id, label, quick_fingerprint)


_SADD_SORTED = [(key, f'"{key}":') for key in sorted(SADD_KEYS)]
_VULNERABLE_SORTED = [(key, f'"{key}":') for key in sorted(VULNERABLE_KEYS)]


def quick_fingerprint(data: dict[str, Any]) -> str:
    """`reports.request_fingerprint` for the data a row makes, without a general JSON
    encoder: the same canonical text (keys sorted, no spaces, ASCII), written in order."""
    parts = ["{"]
    add = parts.append
    if "group_id" in data:
        add(f'"group_id":"{data["group_id"]}",')
    else:
        add(f'"group_label":{_quote(data["group_label"])},')
    needs = data.get("needs")
    if needs:
        items = []
        for need in needs:
            note = need.get("note")
            head = "{" if note is None else '{"note":' + _quote(note) + ","
            items.append(f'{head}"sector":{_quote(need["sector"])},"severity":{need["severity"]}}}')
        add('"needs":[' + ",".join(items) + "],")
    note = data.get("note")
    if note is not None:
        add(f'"note":{_quote(note)},')
    add(f'"observed_at":"{data["observed_at"].astimezone(UTC).isoformat()}",')
    sadd = data.get("sadd")
    if sadd is not None:
        add('"sadd":{' + ",".join(f"{name}{sadd[key]}" for key, name in _SADD_SORTED) + "},")
    if "group_id" not in data:
        add(f'"site_id":{_quote(data["site_id"])},')
    add(f'"total":{data["total"]}')
    vulnerable = data.get("vulnerable")
    if vulnerable is not None:
        given = [f"{name}{vulnerable[k]}" for k, name in _VULNERABLE_SORTED if k in vulnerable]
        add(',"vulnerable":{' + ",".join(given) + "}")
    add("}")
    return hashlib.sha256("".join(parts).encode()).hexdigest()
