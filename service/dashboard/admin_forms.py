"""Reading the admin pages' forms through the API's own schemas, so a value is accepted
on a page exactly when the API accepts it (one rule, not a second copy).

A form sends text; the API's schemas read JSON. `as_json` turns a form's boxes into
the JSON the API would be sent: an empty box is "not given" (or null where the field
may be null), a number box a number when it is one, left as text otherwise so the
schema refuses it with its own message.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flask_babel import gettext as _
from marshmallow import Schema, ValidationError

from service.domain.errors import DomainError


@dataclass
class FormErrors:
    """What is wrong with a form: one message for the page, and one per field."""

    message: str
    fields: dict[str, str] = field(default_factory=dict)


def as_json(
    form: Mapping[str, str],
    *,
    text: Iterable[str] = (),
    nullable: Iterable[str] = (),
    integers: Iterable[str] = (),
    numbers: Iterable[str] = (),
) -> dict[str, Any]:
    """The JSON an API client would send for these form boxes (see the module's note)."""
    data: dict[str, Any] = {}
    nullable = set(nullable)
    for name in (*text, *integers, *numbers):
        if name not in form:
            continue
        raw = form[name].strip()
        if raw == "":
            if name in nullable:
                data[name] = None
            continue
        if name in integers:
            data[name] = _number(raw, int)
        elif name in numbers:
            data[name] = _number(raw, float)
        else:
            data[name] = form[name]
    return data


def _number(raw: str, kind: type) -> Any:
    try:
        return kind(raw.replace(",", ".") if kind is float else raw)
    except ValueError:
        return raw


def load(schema: Schema, data: dict[str, Any]) -> dict[str, Any]:
    """`data` read by the API's `schema`; its refusal raised as `FormRefused`."""
    try:
        return schema.load(data)
    except ValidationError as exc:
        raise FormRefused(_from_messages(exc.messages)) from None


class FormRefused(Exception):
    def __init__(self, errors: FormErrors) -> None:
        super().__init__(errors.message)
        self.errors = errors


def _from_messages(messages: Any) -> FormErrors:
    fields: dict[str, str] = {}
    if isinstance(messages, dict):
        for name, problems in messages.items():
            text = problems if isinstance(problems, str) else " ".join(map(str, problems))
            fields[str(name)] = text
    return FormErrors(_("Nothing was saved: correct the fields marked below."), fields)


def refused(error: DomainError) -> FormErrors:
    """A refusal by the core, for the page: its detail and its field errors."""
    return FormErrors(
        _("Nothing was saved: %(reason)s", reason=error.detail),
        {e.field: e.message for e in error.errors},
    )
