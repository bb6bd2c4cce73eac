"""Merge other people's translations into the catalogs: `make translations` runs this.

Whoever adds strings in their own area (the field app, the admin pages) writes their
translations into `service/translations/incoming/<area>.<lang>.po` (lang: hy or ru), so
that no two people edit the same catalog. This adds each translated entry of those files
to `service/translations/<lang>/LC_MESSAGES/messages.po`, or updates it when it is
already there (the incoming translation wins, and is no longer fuzzy). Nothing else in
the catalogs changes, and the incoming files are left as they are.

Run from the repository root: `python service/translations/merge_incoming.py`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po, write_po

HERE = Path(__file__).resolve().parent
INCOMING = HERE / "incoming"
LANGUAGES = ("hy", "ru")


def catalog_path(language: str) -> Path:
    return HERE / language / "LC_MESSAGES" / "messages.po"


def translated(message: object) -> bool:
    string = message.string  # type: ignore[attr-defined]
    if isinstance(string, (tuple, list)):
        return all(string)
    return bool(string)


def merge(catalog: Catalog, incoming: Catalog) -> int:
    """Add or update `catalog`'s entries from `incoming`'s translated ones; how many."""
    changed = 0
    for message in incoming:
        if not message.id or not translated(message):
            continue
        existing = catalog.get(message.id, message.context)
        if existing is not None and existing.string == message.string and not existing.fuzzy:
            continue
        flags = {flag for flag in message.flags if flag != "fuzzy"}
        if existing is not None:
            existing.string = message.string
            existing.flags = flags | {f for f in existing.flags if f != "fuzzy"}
        else:
            # Not in the sources (yet): `pybabel update` put it aside as obsolete; it is
            # brought back here, once.
            for key, old in list(catalog.obsolete.items()):
                if old.id == message.id and old.context == message.context:
                    del catalog.obsolete[key]
            catalog.add(
                message.id,
                message.string,
                flags=flags,
                auto_comments=message.auto_comments,
                user_comments=message.user_comments,
                context=message.context,
            )
        changed += 1
    return changed


def main() -> int:
    for language in LANGUAGES:
        files = sorted(INCOMING.glob(f"*.{language}.po"))
        if not files:
            continue
        path = catalog_path(language)
        with path.open("rb") as file:
            catalog = read_po(file, locale=language)
        changed = 0
        for incoming_path in files:
            with incoming_path.open("rb") as file:
                incoming = read_po(file, locale=language)
            merged = merge(catalog, incoming)
            print(f"{incoming_path.relative_to(HERE.parent.parent)}: {merged} entries merged")
            changed += merged
        if changed:
            with path.open("wb") as file:
                write_po(file, catalog, sort_output=True, ignore_obsolete=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
