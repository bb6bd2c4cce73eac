"""Checking the rows of an import: each row is read by the one rule
(`headcounts.read_report`, as a CSV row spells a report), with a quick path in front
for the rows a spreadsheet writes, held to the rule's verdict by property tests."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from service.domain import rules
from service.domain.errors import Invalid
from service.domain.headcounts import (
    LABEL_LENGTH,
    MAX_NEEDS,
    NOTE_LENGTH,
    HeadCount,
    Need,
    Spelling,
    made,
    read_report,
)
from service.domain.rules import RuleError
from service.models import NEEDS_SECTORS, SADD_KEYS, VULNERABLE_KEYS


@dataclass(slots=True)
class Row:
    """A sound row: its number (as a spreadsheet shows it), its report, and its key: the
    row's client_id, or one derived from its content (so a file imported again stores
    nothing new). Either key is safe in COPY's text format as it is: a UUID's text, or
    "import:" and hex digits."""

    number: int
    report: HeadCount
    key: str


def keyed(number: int, report: HeadCount) -> Row:
    key = report.client_id if report.client_id is not None else f"import:{report.fingerprint}"
    return Row(number, report, key)


def parse_row(number: int, cells: dict[str, str], latest: datetime) -> Row | list[tuple[str, str]]:
    """A row's report, or its errors as (field, message). `latest` is now plus the clock
    skew allowed."""
    if "" in cells:
        return [("", f"The row has more cells than the header: {cells['']}.")]
    try:
        report = read_report(cells, latest=latest, spelling=Spelling.CELLS)
    except Invalid as refused:
        return [(error.field, error.message) for error in refused.errors]
    return keyed(number, report)


def _memo(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """For cells that repeat (site ids, labels): check each distinct value once."""
    seen: dict[str, tuple[bool, Any]] = {}

    def check(raw: str) -> Any:
        if raw not in seen:
            if len(seen) > 10000:
                seen.clear()
            try:
                seen[raw] = (True, parse(raw))
            except RuleError as exc:
                seen[raw] = (False, exc)
        ok, value = seen[raw]
        if not ok:
            raise value
        return value

    return check


_site_id = _memo(lambda raw: rules.slug(raw.strip()))
_label = _memo(lambda raw: rules.text(raw, max_length=LABEL_LENGTH))


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
_COUNT_MAX = rules.COUNT_MAXIMUM
_COUNT_DIGITS = len(str(_COUNT_MAX))
_SEVERITIES = {str(n): n for n in range(1, 6)}
_SECTOR_NAMES = frozenset(NEEDS_SECTORS)
_group_uuid = _memo(uuid.UUID)


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
    None (then `parse_row` decides). `latest` is now plus the clock skew allowed.
    The same checks as the rule's, inline; and the same HeadCount."""
    if "" in cells:
        return None
    get = cells.get
    client_id = get("client_id") or None
    if client_id is not None and not _CANONICAL_UUID.fullmatch(client_id):
        return None
    raw_group, raw_label, raw_site = get("group_id"), get("group_label"), get("site_id")
    group_id = site_id = label = None
    try:
        if raw_group:
            if raw_label or not _CANONICAL_UUID.fullmatch(raw_group):
                return None
            group_id = _group_uuid(raw_group)
            if raw_site:
                site_id = _site_id(raw_site)
        elif raw_label and raw_site:
            site_id = _site_id(raw_site)
            label = _label(raw_label)
        else:
            return None
    except RuleError:
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
    # The rules between fields, inline: not in the future, not before 2000 ...
    if observed_at > latest or observed_at < rules.EARLIEST_OBSERVATION:
        return None
    total = _quick_count(get("total") or "")
    if total is None:
        return None

    sadd = None
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
        sadd = dict(zip(SADD_KEYS, values, strict=True))
    vulnerable = {}
    for key in VULNERABLE_KEYS:
        raw = get(key)
        if raw:
            value = _quick_count(raw)
            if value is None or value > total:  # ... and no vulnerability exceeds it.
                return None
            vulnerable[key] = value
    needs: list[Need] = []
    raw_needs = get("needs")
    if raw_needs:
        for item in raw_needs.split(";"):
            sector, _, severity = item.partition(":")
            level = _SEVERITIES.get(severity)
            if level is None or sector not in _SECTOR_NAMES:
                return None
            needs.append(Need(sector, level))
        if len(needs) > MAX_NEEDS:
            return None
    note = None
    raw_note = get("note")
    if raw_note:
        try:
            note = rules.text(raw_note, max_length=NOTE_LENGTH, multiline=True, nullable=True)
        except RuleError:
            return None
    report = made(
        observed_at=observed_at,
        observed=_canonical_moment(raw_moment, observed_at),
        total=total,
        group_id=group_id,
        site_id=site_id,
        group_label=label,
        sadd=sadd,
        vulnerable=vulnerable or None,
        needs=tuple(needs),
        note=note,
        client_id=client_id,
    )
    return keyed(number, report)
