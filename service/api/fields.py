"""Fields shared by the API schemas: strict about what a field may carry."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from marshmallow import ValidationError, fields, validate

from service.domain.sites import SLUG

# C0 controls and DEL; PostgreSQL refuses NUL outright, and none belong in a label.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_CONTROL_OR_NEWLINE = re.compile(r"[\x00-\x1f\x7f]")
# The whitespace people leave around a value; trimmed before the control check, so a
# stray trailing newline is forgiven but any other control character is refused.
_PLAIN_WHITESPACE = " \t\r\n"


def _encodable(text: str) -> None:
    """Refuse lone surrogates (JSON allows "\\ud800"): no database can store them."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError("Must be valid Unicode text.") from None


class Text(fields.String):
    """A trimmed string with no control characters (newlines only where `multiline`).

    Empty (after trimming) is refused, or read as null where the field may be null.
    """

    def __init__(self, *, max_length: int, multiline: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_length = max_length
        self.multiline = multiline
        self.pattern = _CONTROL if multiline else _CONTROL_OR_NEWLINE

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str | None:
        raw = super()._deserialize(value, attr, data, **kwargs)
        _encodable(raw)
        if self.multiline:
            raw = raw.replace("\r\n", "\n")
        if self.pattern.search(raw.strip(_PLAIN_WHITESPACE)):
            raise ValidationError("Must not contain control characters.")
        text = raw.strip()
        if len(text) > self.max_length:
            raise ValidationError(f"At most {self.max_length} characters.")
        if not text:
            if self.allow_none:
                return None
            raise ValidationError("Must not be empty.")
        return text


class SiteId(fields.String):
    """A reference to a site by its slug id; anything that could not be one is refused."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            validate=[
                validate.Length(min=2, max=64),
                validate.Regexp(SLUG, error="Use a slug: lowercase letters, digits and hyphens."),
            ],
            **kwargs,
        )


class Moment(fields.AwareDateTime):
    """An ISO 8601 moment with a time zone, read as UTC (as it is stored and shown).

    A moment that has no UTC equivalent (year 1 at +05:00) is refused here, not left
    to overflow when it is compared or stored.
    """

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> datetime:
        moment = super()._deserialize(value, attr, data, **kwargs)
        try:
            return moment.astimezone(UTC)
        except OverflowError:
            raise ValidationError("Out of range.") from None


class Count(fields.Integer):
    """A head count: a whole number of people, 0 to a million (JSON numbers only)."""

    MAXIMUM = 1_000_000

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(strict=True, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        number = super()._deserialize(value, attr, data, **kwargs)
        if number < 0:
            raise ValidationError("Must be 0 or more.")
        if number > self.MAXIMUM:
            raise ValidationError(f"Must be at most {self.MAXIMUM:,}.")
        return number
