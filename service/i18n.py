"""Languages: every page and email in English, Armenian or Russian (Flask-Babel).

A person's language is the `lang` cookie the language switcher sets, else the best
match for their browser's `Accept-Language`, else English. An email is written in its
subscription's `language`, with `flask_babel.force_locale`. Catalogs are
`service/translations/<lang>/LC_MESSAGES/messages.po`, extracted with `babel.cfg`.
"""

from __future__ import annotations

from pathlib import Path

from flask import Flask, has_request_context, request

from service.extensions import babel

LANGUAGES = ("en", "hy", "ru")
DEFAULT_LANGUAGE = "en"
COOKIE = "lang"
TRANSLATIONS = Path(__file__).resolve().parent / "translations"


def chosen_language() -> str:
    """The language of the request being answered (English outside one)."""
    if not has_request_context():
        return DEFAULT_LANGUAGE
    cookie = request.cookies.get(COOKIE)
    if cookie in LANGUAGES:
        return cookie
    return request.accept_languages.best_match(LANGUAGES) or DEFAULT_LANGUAGE


def init_app(app: Flask) -> None:
    app.config.setdefault("BABEL_DEFAULT_LOCALE", DEFAULT_LANGUAGE)
    app.config.setdefault("BABEL_DEFAULT_TIMEZONE", "UTC")
    babel.init_app(
        app,
        locale_selector=chosen_language,
        default_translation_directories=str(TRANSLATIONS),
    )
