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


@dataclass(slots=True)
class Row:
    number: int
    key: str
    fingerprint: str
    client_id: str | None
    data: dict[str, Any]
    group_id: uuid.UUID | None
    site_id: str | None
    group_label: str | None
    # data["observed_at"] as ISO 8601 text in UTC: the fingerprint's and COPY's text.
    observed: str


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
    _name_group(data, group_id, site_id, label)
    observed = observed_at.astimezone(UTC).isoformat()
    return _row(number, client, data, request_fingerprint(data), observed, site_id)


def _name_group(
    data: dict[str, Any], group_id: uuid.UUID | None, site_id: str | None, label: str | None
) -> None:
    """A report names its group by id, or by label at a site (created when new)."""
    if group_id is not None:
        data["group_id"] = group_id
    else:
        data["site_id"] = site_id
        data["group_label"] = label


def _row(
    number: int,
    client_id: str | None,
    data: dict[str, Any],
    fingerprint: str,
    observed: str,
    site_id: str | None,
) -> Row:
    """The Row of a sound report (its group named in `data`), keyed by its client_id or,
    without one, by its content. `site_id` is the row's, given with a group_id too.
    (Either key is safe in COPY's text format as it is: a UUID's text or hex digits.)"""
    return Row(
        number,
        client_id if client_id is not None else f"import:{fingerprint}",
        fingerprint,
        client_id,
        data,
        data.get("group_id"),
        site_id,
        data.get("group_label"),
        observed,
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
        if number <= _COUNT_MAX:
            return number
    return None


# A moment written as the fingerprint writes it: `isoformat` in UTC.
_CANONICAL_MOMENT = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{6})?\+00:00"
)


def _canonical_moment(raw: str, moment: datetime) -> str:
    """The moment's text as the fingerprint writes it: `raw` itself when it is written so
    already (microseconds only when not zero), else formatted (most files need not be)."""
    match = _CANONICAL_MOMENT.fullmatch(raw)
    if match and (match.group(1) is None or moment.microsecond):
        return raw
    return moment.astimezone(UTC).isoformat()


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
    data: dict[str, Any] = {}
    site_id = None
    try:
        if raw_group:
            if raw_label or not _CANONICAL_UUID.fullmatch(raw_group):
                return None
            data["group_id"] = _group_uuid(raw_group)
            if raw_site:
                site_id = _site_id(raw_site)
        elif raw_label and raw_site:
            data["site_id"] = site_id = _site_id(raw_site)
            data["group_label"] = _label(raw_label)
        else:
            return None
    except ValidationError:
        return None

    raw_moment = get("observed_at") or ""
    try:
        observed_at = datetime.fromisoformat(raw_moment)
    except (ValueError, OverflowError):
        return None
    if observed_at.tzinfo is not UTC:
        if observed_at.utcoffset() is None:
            return None
        try:
            observed_at = observed_at.astimezone(UTC)
        except OverflowError:
            return None
    # reports.check_rules, inline: not in the future, not before 2000 ...
    if observed_at > latest or observed_at < EARLIEST_OBSERVATION:
        return None
    data["observed_at"] = observed_at
    total = _quick_count(get("total") or "")
    if total is None:
        return None
    data["total"] = total

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
        if max(values) > _COUNT_MAX:
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
    observed = _canonical_moment(raw_moment, observed_at)
    fingerprint = _fingerprint(data, observed, raw_group or None)
    return _row(number, client_id, data, fingerprint, observed, site_id)


# The fingerprint's canonical JSON is written in key order: group_id | group_label, needs,
# note, observed_at, sadd, site_id, total, vulnerable.
_SADD_FORMAT = '"sadd":{' + ",".join(f'"{key}":%d' for key in sorted(SADD_KEYS)) + "},"
_SADD_ORDER = sorted(SADD_KEYS)
_VULNERABLE_SORTED = [(key, f'"{key}":') for key in sorted(VULNERABLE_KEYS)]


def quick_fingerprint(data: dict[str, Any]) -> str:
    """`reports.request_fingerprint` for the data a row makes, without a general JSON
    encoder: the same canonical text (keys sorted, no spaces, ASCII), written in order."""
    group_id = data.get("group_id")
    group = str(group_id) if group_id is not None else None
    return _fingerprint(data, data["observed_at"].astimezone(UTC).isoformat(), group)


def _fingerprint(data: dict[str, Any], observed: str, group: str | None) -> str:
    """The fingerprint of `data`, given its moment's text and its group id's text."""
    if group is not None:
        text = f'{{"group_id":"{group}",'
    else:
        text = f'{{"group_label":{_quote(data["group_label"])},'
    needs = data.get("needs")
    if needs:
        items = []
        for need in needs:
            note = need.get("note")
            head = "{" if note is None else '{"note":' + _quote(note) + ","
            items.append(f'{head}"sector":{_quote(need["sector"])},"severity":{need["severity"]}}}')
        text += '"needs":[' + ",".join(items) + "],"
    note = data.get("note")
    if note is not None:
        text += f'"note":{_quote(note)},'
    text += f'"observed_at":"{observed}",'
    sadd = data.get("sadd")
    if sadd is not None:
        text += _SADD_FORMAT % tuple(map(sadd.__getitem__, _SADD_ORDER))
    if group is None:
        text += f'"site_id":{_quote(data["site_id"])},'
    text += f'"total":{data["total"]}'
    vulnerable = data.get("vulnerable")
    if vulnerable is not None:
        given = [f"{name}{vulnerable[k]}" for k, name in _VULNERABLE_SORTED if k in vulnerable]
        text += ',"vulnerable":{' + ",".join(given) + "}"
    return hashlib.sha256((text + "}").encode()).hexdigest()
