"""The rules a single value must keep, whatever carried it (a JSON body, a CSV cell, a
form): plain functions that raise `RuleError` with the message a person reads.

The API's marshmallow fields (service/api/fields.py) and the head-count rule
(service/domain/headcounts.py) both call these, so a value passes or fails the same
way everywhere.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime

# A site id is a slug. `\Z`, not `$`, which would also match before a trailing newline.
SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*\Z")
SLUG_LENGTH = (2, 64)
# A head count: a whole number of people, 0 to a million.
COUNT_MAXIMUM = 1_000_000
# A typo'd year (0023 for 2023) would otherwise pass as a very old, very stale count.
EARLIEST_OBSERVATION = datetime(2000, 1, 1, tzinfo=UTC)

# C0 controls and DEL; PostgreSQL refuses NUL outright, and none belong in a label.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_CONTROL_OR_NEWLINE = re.compile(r"[\x00-\x1f\x7f]")
# Invisible characters (Unicode's "format" category, Cf: zero-width spaces, soft hyphen,
# byte-order mark, the bidirectional overrides and isolates U+202A-202E, U+2066-2069) make
# a label read differently from what it is ("Hangar 7" shown as another). Refused, but
# for the zero-width joiner and non-joiner, which Persian, Hindi and other scripts need to
# spell words (and emoji sequences use). Line and paragraph separators (U+2028, U+2029)
# break a line where no newline is allowed, and are not how a note writes one either.
_JOINERS = frozenset("\u200c\u200d")
_SEPARATORS = frozenset("\u2028\u2029")
# A whole number written in a CSV cell: ASCII digits only. Python's int() also reads
# Arabic-Indic `١٢` and full-width `５`, which a spreadsheet never writes as a number.
_WHOLE_NUMBER = re.compile(r"[+-]?[0-9]{1,15}")
# The whitespace people leave around a value; trimmed before the control check, so a
# stray trailing newline is forgiven but any other control character is refused.
_PLAIN_WHITESPACE = " \t\r\n"

MISSING = "Missing data for required field."
NULL = "Field may not be null."
UNKNOWN = "Unknown field."
NOT_AN_OBJECT = "Invalid input type."
TOO_LARGE = f"Must be at most {COUNT_MAXIMUM:,}."


class RuleError(ValueError):
    """A value breaks a rule; the message says which, for a person."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def text(
    raw: str, *, max_length: int, multiline: bool = False, nullable: bool = False
) -> str | None:
    """A trimmed string with no control characters (newlines only where `multiline`).
    Empty (after trimming) is refused, or read as None where the value may be null."""
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError:
        # JSON allows lone surrogates ("\ud800"); no database can store them.
        raise RuleError("Must be valid Unicode text.") from None
    if multiline:
        raw = raw.replace("\r\n", "\n")
    pattern = _CONTROL if multiline else _CONTROL_OR_NEWLINE
    if pattern.search(raw.strip(_PLAIN_WHITESPACE)):
        raise RuleError("Must not contain control characters.")
    if not raw.isascii():
        _visible(raw)
    value = raw.strip()
    if len(value) > max_length:
        raise RuleError(f"At most {max_length} characters.")
    if not value:
        if nullable:
            return None
        raise RuleError("Must not be empty.")
    return value


def _visible(raw: str) -> None:
    for character in raw:
        if character in _SEPARATORS:
            raise RuleError(
                f"Must not contain a line or paragraph separator (U+{ord(character):04X})."
            )
        if unicodedata.category(character) == "Cf" and character not in _JOINERS:
            raise RuleError(
                "Must not contain invisible or text-direction characters "
                f"(U+{ord(character):04X} {unicodedata.name(character, 'format character')})."
            )


def whole_number(raw: str) -> int:
    """A whole number as text (a CSV cell): an optional sign and ASCII digits."""
    if not _WHOLE_NUMBER.fullmatch(raw):
        raise RuleError("Not a valid integer.")
    return int(raw)


def slug(raw: str) -> str:
    """A site id: a slug of 2 to 64 lowercase letters, digits and hyphens."""
    low, high = SLUG_LENGTH
    if not low <= len(raw) <= high:
        raise RuleError(f"Length must be between {low} and {high}.")
    if not SLUG.match(raw):
        raise RuleError("Use a slug: lowercase letters, digits and hyphens.")
    return raw


def count(number: int) -> int:
    """A number of people."""
    if number < 0:
        raise RuleError("Must be 0 or more.")
    if number > COUNT_MAXIMUM:
        raise RuleError(TOO_LARGE)
    return number


def in_utc(moment: datetime) -> datetime:
    """An aware moment, read as UTC (as it is stored and shown). A moment that has no UTC
    equivalent (year 1 at +05:00) is refused here, not left to overflow later."""
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise RuleError("Out of range.") from None


def aware_moment(raw: str) -> datetime:
    """An ISO 8601 moment with a time zone, in UTC (as marshmallow's AwareDateTime reads
    it, with the same messages)."""
    try:
        moment = datetime.fromisoformat(raw)
    except (TypeError, ValueError):
        raise RuleError("Not a valid datetime.") from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise RuleError("Not a valid aware datetime.")
    return in_utc(moment)
