"""What a head count is, and whether one is sound: the one rule every way in uses.

`read_report` reads a report as a JSON body spells it (`POST /reports`, each item of a
batch) or as a row of a CSV import spells it (text cells, flat breakdown columns, needs
as `water:4:note;food:3`), checks every field and the rules between fields, and returns
a `HeadCount`, or raises `Invalid` naming every field that is wrong at once. The API's
schema, the batch, the import and the demo all call it; the import's quick pre-parser
(imports/checking.py) is held to its verdict by property tests.

`fingerprint` is what makes two requests "the same report" for an idempotency key:
every field but the client_id, in a canonical JSON text, hashed.
"""

from __future__ import annotations

import functools
import hashlib
import json
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from enum import Enum
from typing import Any, NamedTuple

from service.domain import rules
from service.domain.errors import FieldError, Invalid
from service.domain.rules import MISSING, NOT_AN_OBJECT, NULL, UNKNOWN, RuleError
from service.domain.settings import setting
from service.models import NEEDS_SECTORS, SADD_KEYS, VULNERABLE_KEYS
from service.types import utcnow

MAX_NEEDS = len(NEEDS_SECTORS) * 5
NOTE_LENGTH = 2000
NEED_NOTE_LENGTH = 1000
LABEL_LENGTH = 200
# Report ids are 32-bit integers; a larger one names no report (and PostgreSQL would
# refuse to compare it with one).
LARGEST_REPORT_ID = 2**31 - 1

SECTOR_CHOICES = f"Must be one of: {', '.join(NEEDS_SECTORS)}."
SEVERITY_RANGE = "Must be greater than or equal to 1 and less than or equal to 5."
SUPERSEDES_RANGE = (
    f"Must be greater than or equal to 1 and less than or equal to {LARGEST_REPORT_ID}."
)
INVALID_FIELDS = "The report has invalid fields; see errors."
BROKEN_RULE = "The report breaks a counting rule; see errors."
NEED_SYNTAX = "Write a need as sector:severity (e.g. water:4), ';' between."


class Spelling(Enum):
    """How the report was written: a JSON body, or the text cells of a CSV row."""

    JSON = "json"
    CELLS = "cells"


class Need(NamedTuple):
    sector: str
    severity: int
    note: str | None = None


class HeadCount(NamedTuple):
    """A sound head count. The group is named by `group_id`, or (in an import) by
    `group_label` at `site_id`; an import row may give `site_id` beside a `group_id`
    too, to be checked against the group's site. (Named tuples: immutable, and cheap to
    make by the hundred thousand in an import.)"""

    observed_at: datetime  # in UTC
    total: int
    group_id: uuid.UUID | None = None
    site_id: str | None = None
    group_label: str | None = None
    sadd: dict[str, int] | None = None
    vulnerable: dict[str, int] | None = None
    needs: tuple[Need, ...] = ()
    note: str | None = None
    supersedes: int | None = None
    client_id: str | None = None
    # observed_at as ISO 8601 text in UTC: the fingerprint's (and COPY's) text.
    observed: str = ""
    fingerprint: str = ""


def latest_observation() -> datetime:
    """The latest moment an observation may have (and a summary be as of): now, plus the
    clock skew allowed for field devices."""
    return utcnow() + timedelta(seconds=setting("CLOCK_SKEW_SECONDS"))


def read_report(raw: Any, *, latest: datetime, spelling: Spelling = Spelling.JSON) -> HeadCount:
    """The head count `raw` says, or `Invalid` with every field that is wrong.

    `latest` is the latest moment an observation may have (`latest_observation()`).
    """
    if not isinstance(raw, Mapping):
        raise Invalid(INVALID_FIELDS, errors=[FieldError("", NOT_AN_OBJECT)])
    read = _Reader(raw, spelling)
    report = read.report()
    if read.errors:
        raise Invalid(INVALID_FIELDS, errors=read.errors)
    broken = broken_rules(report, latest)
    if broken:
        raise Invalid(BROKEN_RULE, errors=broken)
    return report


def broken_rules(report: HeadCount, latest: datetime) -> list[FieldError]:
    """The rules between fields: not in the future, not before 2000, the breakdown adds up
    to the total, and no vulnerability exceeds it."""
    errors: list[FieldError] = []
    if report.observed_at > latest:
        errors.append(FieldError("observed_at", "Must not be in the future."))
    elif report.observed_at < rules.EARLIEST_OBSERVATION:
        errors.append(FieldError("observed_at", "Must be in 2000 or later; check the year."))
    total = report.total
    if report.sadd is not None:
        added = sum(report.sadd.values())
        if added != total:
            message = f"The breakdown adds up to {added}, not the total {total}."
            errors.append(FieldError("sadd", message))
    for key, value in (report.vulnerable or {}).items():
        if value > total:
            errors.append(FieldError(f"vulnerable.{key}", f"Must not exceed the total {total}."))
    return errors


def made(
    observed_at: datetime,
    total: int,
    group_id: uuid.UUID | None = None,
    site_id: str | None = None,
    group_label: str | None = None,
    sadd: dict[str, int] | None = None,
    vulnerable: dict[str, int] | None = None,
    needs: tuple[Need, ...] = (),
    note: str | None = None,
    supersedes: int | None = None,
    client_id: str | None = None,
    observed: str = "",
) -> HeadCount:
    """A HeadCount from sound fields, with its canonical moment text and fingerprint (the
    readers, and the import's quick path, make them all here)."""
    fields = (
        observed_at,
        total,
        group_id,
        site_id,
        group_label,
        sadd,
        vulnerable,
        needs,
        note,
        supersedes,
        client_id,
        observed or observed_at.isoformat(),
    )
    return HeadCount(*fields, fingerprint(HeadCount(*fields)))


# ---------------------------------------------------------------------------------------
# The fingerprint
# ---------------------------------------------------------------------------------------
# The canonical JSON of the report (keys sorted, no spaces, ASCII; what is not given is
# left out), written in key order without a general encoder: group_id | group_label,
# needs, note, observed_at, sadd, site_id (with a label only), supersedes, total,
# vulnerable. tests/test_headcounts.py holds it to json.dumps(sort_keys=True).

_quote: Callable[[str], str] = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]
_SADD_ORDER = sorted(SADD_KEYS)
_SADD_FORMAT = '"sadd":{' + ",".join(f'"{key}":%d' for key in _SADD_ORDER) + "},"
_VULNERABLE_SORTED = [(key, f'"{key}":') for key in sorted(VULNERABLE_KEYS)]


@functools.lru_cache(maxsize=4096)
def _text(group_id: uuid.UUID) -> str:
    # Groups repeat (an import names a few hundred, a hundred thousand times).
    return str(group_id)


def fingerprint(report: HeadCount) -> str:
    if report.group_id is not None:
        text = f'{{"group_id":"{_text(report.group_id)}",'
    else:
        text = f'{{"group_label":{_quote(report.group_label or "")},'
    if report.needs:
        items = []
        for need in report.needs:
            head = "{" if need.note is None else '{"note":' + _quote(need.note) + ","
            items.append(f'{head}"sector":{_quote(need.sector)},"severity":{need.severity}}}')
        text += '"needs":[' + ",".join(items) + "],"
    if report.note is not None:
        text += f'"note":{_quote(report.note)},'
    text += f'"observed_at":"{report.observed}",'
    sadd = report.sadd
    if sadd is not None:
        text += _SADD_FORMAT % tuple(map(sadd.__getitem__, _SADD_ORDER))
    if report.group_id is None:
        text += f'"site_id":{_quote(report.site_id or "")},'
    if report.supersedes is not None:
        text += f'"supersedes":{report.supersedes},'
    text += f'"total":{report.total}'
    vulnerable = report.vulnerable
    if vulnerable is not None:
        given = [f"{name}{vulnerable[k]}" for k, name in _VULNERABLE_SORTED if k in vulnerable]
        text += ',"vulnerable":{' + ",".join(given) + "}"
    return hashlib.sha256((text + "}").encode()).hexdigest()


def canonical(report: HeadCount) -> dict[str, Any]:
    """The report as the canonical JSON the fingerprint hashes (for tests and tools)."""
    data: dict[str, Any] = {"observed_at": report.observed, "total": report.total}
    if report.group_id is not None:
        data["group_id"] = str(report.group_id)
    else:
        data["group_label"], data["site_id"] = report.group_label, report.site_id
    if report.needs:
        data["needs"] = [
            {"sector": n.sector, "severity": n.severity}
            | ({"note": n.note} if n.note is not None else {})
            for n in report.needs
        ]
    for name in ("note", "sadd", "supersedes", "vulnerable"):
        if getattr(report, name) is not None:
            data[name] = getattr(report, name)
    return data


# ---------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------

_JSON_FIELDS = frozenset(
    {"group_id", "observed_at", "total", "sadd", "vulnerable", "needs", "note", "supersedes"}
    | {"client_id"}
)
GROUP_CELLS = ("group_id", "group_label")
# A CSV row: the breakdown and the vulnerabilities are columns of their own.
CELLS = (
    "client_id",
    "site_id",
    "group_label",
    "group_id",
    "observed_at",
    "total",
    *SADD_KEYS,
    *VULNERABLE_KEYS,
    "needs",
    "note",
)
_NEED_FIELDS = frozenset({"sector", "severity", "note"})


class _Reader:
    """Reads one report's fields, collecting every error (worded as marshmallow words
    them, so the API's messages are what they always were)."""

    def __init__(self, raw: Mapping[str, Any], spelling: Spelling) -> None:
        self.errors: list[FieldError] = []
        self.cells = spelling is Spelling.CELLS
        if self.cells:
            # Empty cells are cells not given (most are empty in most files).
            self.raw = {k: v for k, v in raw.items() if v and not v.isspace()}
        else:
            self.raw = raw

    def fail(self, name: str, message: str) -> None:
        self.errors.append(FieldError(name, message))

    def report(self) -> HeadCount | None:
        raw = self.raw
        known = CELLS if self.cells else _JSON_FIELDS
        for name in raw:
            if name not in known:
                self.fail(str(name), UNKNOWN)
        client_id = self.value(raw, "client_id", self.uuid)
        group_id = self.value(raw, "group_id", self.uuid, required=not self.cells)
        site_id = group_label = supersedes = None
        if self.cells:
            group_label = self.value(raw, "group_label", self.label)
            site_id = self.value(raw, "site_id", self.site)
            self.named_group(group_id, group_label)
        observed_at = self.value(raw, "observed_at", self.moment, required=True)
        total = self.value(raw, "total", self.count, required=True)
        if self.cells:
            sadd = self.counts(raw, "sadd", SADD_KEYS) if _any_of(raw, SADD_KEYS) else None
            vulnerable = self.counts(raw, "vulnerable", VULNERABLE_KEYS, optional=True)
            needs = self.needs_text(raw["needs"]) if "needs" in raw else ()
        else:
            sadd = self.value(raw, "sadd", self.sadd, nullable=True)
            vulnerable = self.value(raw, "vulnerable", self.vulnerable, nullable=True)
            needs = self.value(raw, "needs", self.needs) or ()
            supersedes = self.value(raw, "supersedes", self.report_id, nullable=True)
        note = self.value(raw, "note", self.note, nullable=True)
        if self.errors:
            return None
        return made(
            observed_at=observed_at,
            total=total,
            group_id=group_id,
            site_id=site_id,
            group_label=group_label,
            sadd=sadd,
            vulnerable=vulnerable or None,
            needs=needs,
            note=note,
            supersedes=supersedes,
            client_id=str(client_id) if client_id is not None else None,
        )

    def named_group(self, group_id: uuid.UUID | None, label: str | None) -> None:
        """A row names its group by id, or by label at a site (created when new)."""
        given = self.raw
        if group_id is None and label is None and not _any_of(given, GROUP_CELLS):
            self.fail("group_id", "Give the group's group_id, or its group_label and site_id.")
        elif group_id is not None and label is not None:
            self.fail("group_label", "Give group_id or group_label, not both.")
        elif label is not None and "site_id" not in given:
            self.fail("site_id", MISSING)

    def value(
        self,
        raw: Mapping[str, Any],
        name: str,
        read: Callable[[Any], Any],
        *,
        required: bool = False,
        nullable: bool = False,
        prefix: str = "",
    ) -> Any:
        """`read(raw[name])`; an error (or a value missing or null where it may not be) is
        recorded under `prefix + name` and gives None."""
        if name not in raw:
            if required:
                self.fail(prefix + name, MISSING)
            return None
        value = raw[name]
        if value is None:
            if not nullable:
                self.fail(prefix + name, NULL)
            return None
        try:
            return read(value)
        except RuleError as exc:
            self.fail(prefix + name, exc.message)
            return None

    # -- one value each ---------------------------------------------------------------

    def uuid(self, value: Any) -> uuid.UUID:
        try:
            return uuid.UUID(value.strip() if self.cells else value)
        except (AttributeError, TypeError, ValueError):
            raise RuleError("Not a valid UUID.") from None

    def integer(self, value: Any) -> int:
        if self.cells:
            return rules.whole_number(value.strip())
        if type(value) is not int:  # JSON numbers only: not "12", 12.0 or true
            raise RuleError("Not a valid integer.")
        return value

    def count(self, value: Any) -> int:
        return rules.count(self.integer(value))

    def moment(self, value: Any) -> datetime:
        if not isinstance(value, str):
            raise RuleError("Not a valid datetime.")
        return rules.aware_moment(value.strip() if self.cells else value)

    @staticmethod
    def string(value: Any) -> str:
        if not isinstance(value, str):
            raise RuleError("Not a valid string.")
        return value

    def note(self, value: Any) -> str | None:
        return rules.text(self.string(value), max_length=NOTE_LENGTH, multiline=True, nullable=True)

    def label(self, value: Any) -> str | None:
        return rules.text(self.string(value), max_length=LABEL_LENGTH)

    def site(self, value: Any) -> str:
        return rules.slug(self.string(value).strip())

    def report_id(self, value: Any) -> int:
        number = self.integer(value)
        if not 1 <= number <= LARGEST_REPORT_ID:
            raise RuleError(SUPERSEDES_RANGE)
        return number

    def counts(
        self, raw: Mapping[str, Any], name: str, keys: tuple[str, ...], *, optional: bool = False
    ) -> dict[str, int] | None:
        """Counts under `keys`: all of them (a breakdown), or those given (vulnerabilities).
        In JSON they are an object of their own; in a CSV row, columns of the row. Either
        way an error is named inside `name`: `sadd.male_0_4`."""
        before = len(self.errors)
        prefix = f"{name}."
        counted = {}
        for key in keys:
            number = self.value(raw, key, self.count, required=not optional, prefix=prefix)
            if number is not None:
                counted[key] = number
        if not self.cells:
            for key in raw:
                if key not in keys:
                    self.fail(f"{prefix}{key}", UNKNOWN)
        return counted if len(self.errors) == before else None

    def sadd(self, value: Any) -> dict[str, int] | None:
        return self.nested(value, "sadd", SADD_KEYS, optional=False)

    def vulnerable(self, value: Any) -> dict[str, int] | None:
        return self.nested(value, "vulnerable", VULNERABLE_KEYS, optional=True)

    def nested(
        self, value: Any, name: str, keys: tuple[str, ...], *, optional: bool
    ) -> dict[str, int] | None:
        if not isinstance(value, Mapping):
            raise RuleError(NOT_AN_OBJECT)
        return self.counts(value, name, keys, optional=optional)

    def needs(self, value: Any) -> tuple[Need, ...]:
        if not isinstance(value, list):
            raise RuleError("Not a valid list.")
        before = len(self.errors)
        needs = [self.need(item, f"needs.{index}") for index, item in enumerate(value)]
        if len(self.errors) == before and len(needs) > MAX_NEEDS:
            raise RuleError(f"Longer than maximum length {MAX_NEEDS}.")
        return tuple(need for need in needs if need is not None)

    def need(self, item: Any, name: str) -> Need | None:
        if not isinstance(item, Mapping):
            self.fail(name, NOT_AN_OBJECT)
            return None
        before = len(self.errors)
        prefix = f"{name}."
        sector = self.value(item, "sector", self.sector, required=True, prefix=prefix)
        severity = self.value(item, "severity", self.severity, required=True, prefix=prefix)
        note = self.value(item, "note", self.need_note, nullable=True, prefix=prefix)
        for key in item:
            if key not in _NEED_FIELDS:
                self.fail(f"{prefix}{key}", UNKNOWN)
        if len(self.errors) > before:
            return None
        return Need(sector, severity, note)

    def sector(self, value: Any) -> str:
        if self.string(value) not in NEEDS_SECTORS:
            raise RuleError(SECTOR_CHOICES)
        return value

    def severity(self, value: Any) -> int:
        number = self.integer(value)
        if not 1 <= number <= 5:
            raise RuleError(SEVERITY_RANGE)
        return number

    def need_note(self, value: Any) -> str | None:
        text = self.string(value)
        return rules.text(text, max_length=NEED_NOTE_LENGTH, multiline=True, nullable=True)

    def needs_text(self, raw: str) -> tuple[Need, ...]:
        """A CSV cell of needs: `water:4;food:3:bread from the peacekeepers' kitchen`."""
        items = [item for item in raw.split(";") if item.strip()]
        if len(items) > MAX_NEEDS:
            self.fail("needs", f"Longer than maximum length {MAX_NEEDS}.")
            return ()
        needs = []
        for index, item in enumerate(items):
            sector, _, rest = item.partition(":")
            severity, _, note = rest.partition(":")
            name = f"needs.{index}"
            if not rest:
                self.fail(name, NEED_SYNTAX)
                continue
            need = {"sector": sector.strip(), "severity": severity}
            if note.strip():
                need["note"] = note
            parsed = self.need(need, name)
            if parsed is not None:
                needs.append(parsed)
        return tuple(needs)


def _any_of(raw: Mapping[str, Any], names: tuple[str, ...]) -> bool:
    return any(name in raw for name in names)
