"""Is a page fully translated? Compare what a person reads on it in English and in another
language: whatever reads the same in both was not translated.

    untranslated(html_en, html_ru, allow=[site_name, re.compile(r"\\S+@\\S+")])

`visible_texts` is what a person reads or hears from a page: its text nodes (not
scripts or styles) and the attributes shown or read aloud (`title`, `alt`, `aria-label`,
`placeholder`, `value` of a button). A text with no letters (figures, dates written the
same way, punctuation) is never reported, nor one made only of the allowed strings and
patterns: proper names (needs-tracker, API, a site's name), data people typed (a group's
label, an email address), codes and commands. `latin_words` is the stricter check for a
page in a language not written in the Latin script (hy, ru): every Latin-script word left
that is not allowed.

Written for any page of the service (the dashboard, the unsubscribe page, the emails'
HTML, the field app's pages), with nothing specific to one of them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from html.parser import HTMLParser

# Names that read the same in every language.
ALWAYS_ALLOWED: tuple[str | re.Pattern[str], ...] = (
    "needs-tracker",
    "API",
    "CSV",
    "HXL",
    "QR",
    "UTC",
    "ISO 8601",
    "UTF-8",
    "English",
    "Հայերեն",
    "Русский",
    "m²",
    "Natural Earth",
    "nt_…",
    re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+"),  # an email address
    re.compile(r"https?://\S+"),  # a link written out
)
READ_ATTRIBUTES = ("title", "alt", "aria-label", "placeholder")
SKIPPED_ELEMENTS = ("script", "style", "template")
# A sentence's own punctuation in any of the three languages (Armenian full stop, comma...).
_LETTER = re.compile(r"[^\W\d_]")
_LATIN_WORD = re.compile(r"[A-Za-z][A-Za-z'’-]*")


class _Texts(HTMLParser):
    def __init__(self, skip_code: bool) -> None:
        super().__init__(convert_charrefs=True)
        self.texts: list[str] = []
        self.skipping: list[str] = []
        self.skip = SKIPPED_ELEMENTS + (("code",) if skip_code else ())

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.skip:
            self.skipping.append(tag)
        values = dict(attrs)
        for name in READ_ATTRIBUTES:
            if values.get(name):
                self._add(values[name])
        if tag == "input" and values.get("type") in ("submit", "button") and values.get("value"):
            self._add(values["value"])

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag in self.skip:
            self.skipping.pop()

    def handle_endtag(self, tag: str) -> None:
        if self.skipping and self.skipping[-1] == tag:
            self.skipping.pop()

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self._add(data)

    def _add(self, text: str | None) -> None:
        text = " ".join((text or "").split())
        if text:
            self.texts.append(text)


def visible_texts(html: str, *, skip_code: bool = False) -> list[str]:
    """The texts a person reads or hears on the page, in order, whitespace collapsed."""
    parser = _Texts(skip_code)
    parser.feed(html)
    parser.close()
    return parser.texts


def _strip_allowed(text: str, allow: Iterable[str | re.Pattern[str]]) -> str:
    rest = text
    # Longest strings first, so "Stepanakert airport" goes before "Stepanakert".
    strings = sorted((a for a in allow if isinstance(a, str)), key=len, reverse=True)
    for pattern in [a for a in allow if not isinstance(a, str)]:
        rest = pattern.sub(" ", rest)
    for allowed in strings:
        rest = rest.replace(allowed, " ")
    return rest


def is_words(text: str, allow: Iterable[str | re.Pattern[str]] = ()) -> bool:
    """Whether `text` holds a word to translate once the allowed names are taken out."""
    return bool(_LETTER.search(_strip_allowed(text, [*ALWAYS_ALLOWED, *allow])))


def untranslated(
    html_en: str,
    html_other: str,
    allow: Iterable[str | re.Pattern[str]] = (),
    *,
    skip_code: bool = True,
) -> list[str]:
    """The texts of `html_other` that read exactly as on the English page (so were not
    translated), leaving out texts without words and allowed names. `skip_code`: text in
    <code> (commands, column names, ids) is not a sentence to translate."""
    allow = list(allow)
    english = set(visible_texts(html_en, skip_code=skip_code))
    found = []
    for text in visible_texts(html_other, skip_code=skip_code):
        if text in english and is_words(text, allow) and text not in found:
            found.append(text)
    return found


def latin_words(
    html_or_text: str,
    allow: Iterable[str | re.Pattern[str]] = (),
    *,
    skip_code: bool = True,
    is_html: bool = True,
) -> list[str]:
    """Latin-script words left on a page in a language written otherwise (hy, ru),
    other than the allowed names: English that slipped through, even inside a sentence."""
    allow = [*ALWAYS_ALLOWED, *allow]
    texts = (
        visible_texts(html_or_text, skip_code=skip_code) if is_html else html_or_text.splitlines()
    )
    found: list[str] = []
    for text in texts:
        for word in _LATIN_WORD.findall(_strip_allowed(text, allow)):
            if word not in found:
                found.append(word)
    return found
