"""Fields shared by the API schemas: marshmallow's own types, held to the core's rules
(service/domain/rules.py) so a value passes here exactly when it passes everywhere."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from marshmallow import ValidationError, fields

from service.domain import rules


def _held(check: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return check(*args, **kwargs)
    except rules.RuleError as exc:
        raise ValidationError(exc.message) from None


class Text(fields.String):
    """A trimmed string with no control characters (newlines only where `multiline`).

    Empty (after trimming) is refused, or read as null where the field may be null.
    """

    def __init__(self, *, max_length: int, multiline: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_length = max_length
        self.multiline = multiline

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str | None:
        raw = super()._deserialize(value, attr, data, **kwargs)
        return _held(
            rules.text,
            raw,
            max_length=self.max_length,
            multiline=self.multiline,
            nullable=self.allow_none,
        )


class SiteId(fields.String):
    """A reference to a site by its slug id; anything that could not be one is refused."""

    def __init__(self, **kwargs: Any) -> None:
        low, high = rules.SLUG_LENGTH
        # For the OpenAPI document; the rule itself is rules.slug.
        documented = {"minLength": low, "maxLength": high, "pattern": "^[a-z0-9]+(-[a-z0-9]+)*$"}
        super().__init__(metadata=documented | kwargs.pop("metadata", {}), **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        return _held(rules.slug, super()._deserialize(value, attr, data, **kwargs))


class Moment(fields.AwareDateTime):
    """An ISO 8601 moment with a time zone, read as UTC (as it is stored and shown)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> datetime:
        return _held(rules.in_utc, super()._deserialize(value, attr, data, **kwargs))


class Count(fields.Integer):
    """A head count: a whole number of people, 0 to a million (JSON numbers only)."""

    MAXIMUM = rules.COUNT_MAXIMUM

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(strict=True, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        return _held(rules.count, super()._deserialize(value, attr, data, **kwargs))
