"""Forms whose answer shows a secret once (a new token, a webhook's secret): the answer
is the page itself, not a redirect, so the secret is in no URL; a reload would send the
form again. Each such form carries an id (`new_form_id`), and the session remembers
which forms made what (`remember`): a form sent again is known (`made_by`), and makes
nothing twice. A browser's resend, not a data guarantee: two tokens would be a nuisance,
not a wrong count.
"""

from __future__ import annotations

import uuid

from flask import request, session

KEPT = 20  # forms remembered per kind, the latest


def new_form_id() -> str:
    return uuid.uuid4().hex


def sent_form_id() -> str:
    return request.form.get("form_id", "")[:32]


def made_by(kind: str, form_id: str) -> str | None:
    """What this form made already (an id), or None."""
    return session.get(f"{kind}_forms", {}).get(form_id) if form_id else None


def remember(kind: str, form_id: str, made: object) -> None:
    if form_id:
        sent = dict(list(session.get(f"{kind}_forms", {}).items())[-(KEPT - 1) :])
        session[f"{kind}_forms"] = {**sent, form_id: str(made)}
