"""Fields shared by the API schemas: strict about what a field may carry."""

from __future__ import annotations

import re
from typing import Any

from marshmallow import ValidationError, fields

# C0 controls and DEL; PostgreSQL refuses NUL outright, and none belong in a label.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_CONTROL_OR_NEWLINE = re.compile(r"[\x00-\x1f\x7f]")


class Text(fields.String):
    """A trimmed string with no control characters (newlines only where `multiline`)."""

    def __init__(self, *, max_length: int, multiline: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_length = max_length
        self.pattern = _CONTROL if multiline else _CONTROL_OR_NEWLINE

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs).strip()
        if self.pattern.search(text):
            raise ValidationError("Must not contain control characters.")
        if len(text) > self.max_length:
            raise ValidationError(f"At most {self.max_length} characters.")
        if not text and self.required:
            raise ValidationError("Must not be empty.")
        return text


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
