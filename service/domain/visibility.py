"""What of a summary each caller sees.

A summary is site-level, except the flags about one group (`stale_group`,
`conflicting_counts`, `sudden_jump`): their `group_id` and the figures in their message
("jumped from 3 to 12") are that group's. Those are shown to callers who see the
group's site (`Caller.group_view`); everyone else gets the flag (it still counts for the
site) with a message that names no group and no group's figures.
"""

from __future__ import annotations

import hashlib
from typing import Any

# A single group's flag, told without the group's id or figures.
GROUP_FLAG_MESSAGES = {
    "stale_group": "A waiting group has not been counted for a while.",
    "conflicting_counts": "Two counts of one group within an hour disagree.",
    "sudden_jump": "A group's count changed by more than half since its previous count.",
}
ANY_GROUP_FLAG = "One group's data needs a check."


def summary_seen(document: dict[str, Any], view: frozenset[str] | None) -> dict[str, Any]:
    """`document` as a caller with this `group_view` sees it (None: all of it)."""
    if view is None:
        return document

    def seen(flag: dict[str, Any], site_id: str) -> dict[str, Any]:
        if not flag.get("group_id") or site_id in view:
            return flag
        kept = {key: flag[key] for key in ("code", "site_id") if key in flag}
        return kept | {"message": GROUP_FLAG_MESSAGES.get(flag["code"], ANY_GROUP_FLAG)}

    shown = dict(document)
    if "sites" in document:
        shown["sites"] = [
            {**site, "flags": [seen(f, site["site_id"]) for f in site.get("flags", [])]}
            for site in document["sites"]
        ]
    if "flags" in document:
        shown["flags"] = [seen(f, f.get("site_id", "")) for f in document["flags"]]
    return shown


def view_tag(view: frozenset[str] | None) -> str:
    """A short tag of a view, to tell its answers apart (ETags, caches); "" for all."""
    if view is None:
        return ""
    return "v" + hashlib.sha256(",".join(sorted(view)).encode()).hexdigest()[:10]
