"""The core's own errors, in the domain's words. The edge (service/errors.py) answers
each with an RFC 9457 problem; the workers and the command line read them as they are.

`FieldError`s name a field the way a client wrote it (`sadd.male_0_4`, `needs.1.severity`),
so a form can put the message next to the right box.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FieldError:
    field: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


class DomainError(Exception):
    """Something the caller asked for cannot be done; `detail` says what to do instead."""

    title: str | None = None

    def __init__(
        self, detail: str, *, errors: list[FieldError] | None = None, title: str | None = None
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = list(errors or [])
        if title is not None:
            self.title = title


class NotFound(DomainError):
    """What was named does not exist (or the caller may not know that it does)."""


class Invalid(DomainError):
    """The input breaks a rule; `errors` say which fields and why."""


class Forbidden(DomainError):
    """The caller's role or sites do not allow this."""


class Conflict(DomainError):
    """The request contradicts what is stored (an id taken, a key used for other content)."""


class InProgress(DomainError):
    """The same request is being handled right now; send it again after `retry_after` s."""

    def __init__(self, detail: str, *, retry_after: int = 1, title: str | None = None) -> None:
        super().__init__(detail, title=title)
        self.retry_after = retry_after


class Unavailable(DomainError):
    """A part the work needs (the database, the disk) cannot be reached now; try again
    after `retry_after` seconds."""

    def __init__(self, detail: str, *, retry_after: int = 5) -> None:
        super().__init__(detail)
        self.retry_after = retry_after
