"""Three languages (en, hy, ru): the catalogs hold every marked string, translated; every
page and the report email read wholly in Armenian and in Russian; the switcher's cookie
wins over the browser's Accept-Language.
"""

from __future__ import annotations

import html
import io
import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path
from types import SimpleNamespace

import pytest
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from flask_babel import force_locale

from service import i18n
from service import importing as import_runs
from service.domain import subscriptions as subscriptions_domain
from service.domain import summaries, suppression, visibility
from service.domain.tokens import caller_for_secret
from service.extensions import db
from service.models import Subscription
from tests.helpers import AIRPORT, CENTRE, create_group, post_report, summary_now
from tests.i18n_check import latin_words, untranslated, visible_texts
from tests.test_dashboard import a_situation, csrf_token, signed_in
from tests.test_subscriptions import subscribe
from workers.tasks import attempt_delivery

ROOT = Path(__file__).resolve().parent.parent
TRANSLATIONS = ROOT / "service" / "translations"
OTHER = ("hy", "ru")
# What the catalogs' extraction reads beyond gettext's own names (Makefile: translations).
KEYWORDS = {**DEFAULT_KEYWORDS, "_l": None, "lazy_gettext": None}
PLACEHOLDER = re.compile(r"%(?:\((\w+)\))?[-#0 +]*\d*(?:\.\d+)?[diouxXeEfFgGcrs%]")
TAG = re.compile(r"</?\w+[^>]*>")
# Names and data on the pages that read the same in every language.
SITES = ["Stepanakert (centre)", "Stepanakert airport (peacekeepers' base)"]
DATA = [
    *SITES,
    "Hangar 1 families",
    "School 5 families",
    "Quiet courtyard families",
    "day one.csv",
    "Asia/Yerevan",
    re.compile(r"0 7,19 \* \* \*"),
    re.compile(r"\+04"),
    "stepanakert-centre",
    "stepanakert-airport",
]


# --- the catalogs -------------------------------------------------------------------------


def extracted() -> dict[str, tuple[str, ...]]:
    """Every marked string in the sources, as babel.cfg tells `pybabel extract` to read them:
    msgid -> (msgid, plural) for plurals."""
    with (ROOT / "babel.cfg").open() as cfg:
        method_map, options_map = parse_mapping_cfg(cfg)
    found: dict[str, tuple[str, ...]] = {}
    for _file, _line, message, _comments, _context in extract_from_dir(
        str(ROOT), method_map, options_map, keywords=KEYWORDS
    ):
        forms = (message,) if isinstance(message, str) else tuple(m for m in message if m)
        found[forms[0]] = forms
    return found


def catalog(language: str):
    with (TRANSLATIONS / language / "LC_MESSAGES" / "messages.po").open("rb") as file:
        return read_po(file, locale=language)


def placeholders(text: str) -> list[str]:
    return sorted(PLACEHOLDER.findall(text) if "%" in text else [])


def test_every_marked_string_is_in_the_catalogs_translated_with_the_same_placeholders():
    marked = extracted()
    assert len(marked) > 150  # the extraction read the templates and the Python
    assert "Situation as of %(moment)s" in marked and "water" in marked
    problems = []
    for language in OTHER:
        messages = {
            (m.id if isinstance(m.id, str) else m.id[0]): m for m in catalog(language) if m.id
        }
        for msgid, forms in marked.items():
            message = messages.get(msgid)
            if message is None:
                problems.append(f"{language}: not in the catalog: {msgid!r}")
                continue
            strings = message.string if isinstance(message.string, tuple) else (message.string,)
            if message.fuzzy or not all(strings):
                problems.append(f"{language}: not translated (or fuzzy): {msgid!r}")
                continue
            if len(forms) == 2 and not isinstance(message.id, tuple):
                problems.append(
                    f"{language}: a plural in the sources, not in the catalog: {msgid!r}"
                )
                continue
            # Each form keeps the English placeholders (a plural's count may be left out of
            # a form that names one thing, as "one group") and the same HTML tags.
            wanted = set(placeholders(forms[-1]))
            for string in strings:
                if not set(placeholders(string)) <= wanted or (
                    len(forms) == 1 and placeholders(string) != placeholders(msgid)
                ):
                    problems.append(f"{language}: placeholders differ: {msgid!r} -> {string!r}")
                if sorted(TAG.findall(string)) != sorted(TAG.findall(forms[0])):
                    problems.append(f"{language}: HTML tags differ: {msgid!r} -> {string!r}")
    assert problems == [], "\n".join(problems)


def test_incoming_translations_are_merged_into_a_catalog_and_nothing_else_changes(tmp_path):
    """What `make translations` does with another area's incoming/<area>.<lang>.po."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "merge_incoming", TRANSLATIONS / "merge_incoming.py"
    )
    merging = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(merging)
    target = catalog("ru")
    before = {m.id: (m.string, m.fuzzy) for m in target if m.id}
    target.add("Queued", "", flags={"fuzzy"})  # in the catalog, not yet translated
    incoming = read_po(
        io.BytesIO(
            "\n".join(
                [
                    'msgid ""',
                    'msgstr "Content-Type: text/plain; charset=UTF-8\\n"',
                    "",
                    'msgid "Queued"',
                    'msgstr "В очереди"',
                    "",
                    "#, python-format",
                    'msgid "%(count)s sent"',
                    'msgstr "отправлено: %(count)s"',
                    "",
                    'msgid "Not translated yet"',
                    'msgstr ""',
                ]
            ).encode()
        ),
        locale="ru",
    )
    assert merging.merge(target, incoming) == 2
    assert target.get("Queued").string == "В очереди" and not target.get("Queued").fuzzy
    assert target.get("%(count)s sent").string == "отправлено: %(count)s"
    assert "python-format" in target.get("%(count)s sent").flags
    assert target.get("Not translated yet") is None
    assert {m.id: (m.string, m.fuzzy) for m in target if m.id and m.id in before} == before
    assert merging.merge(target, incoming) == 0  # a second run changes nothing


def test_other_areas_incoming_translations_are_in_the_catalogs():
    """A file in translations/incoming/ is merged by `make translations`; until it is,
    its strings would show in English."""
    for language in OTHER:
        messages = {m.id: m.string for m in catalog(language) if m.id}
        for path in sorted((TRANSLATIONS / "incoming").glob(f"*.{language}.po")):
            with path.open("rb") as file:
                incoming = read_po(file, locale=language)
            for message in incoming:
                if message.id and all(
                    message.string if isinstance(message.string, tuple) else [message.string]
                ):
                    assert messages.get(message.id) == message.string, (
                        f"{path.name}: {message.id!r} is not merged: run `make translations`"
                    )


def test_committed_mo_files_are_the_po_files_compiled():
    for language in OTHER:
        compiled = io.BytesIO()
        write_mo(compiled, catalog(language), use_fuzzy=False)
        committed = (TRANSLATIONS / language / "LC_MESSAGES" / "messages.mo").read_bytes()
        assert compiled.getvalue() == committed, f"run `make translations` ({language})"


def test_catalog_headers_ask_for_review_by_a_native_speaker():
    for language in OTHER:
        po = (TRANSLATIONS / language / "LC_MESSAGES" / "messages.po").read_text("utf-8")
        assert "# Needs review by a native speaker" in po
        assert "needs review by a native speaker" in catalog(language).language_team


def test_every_flag_message_the_core_writes_is_translated(app):
    """Flags carry English messages in the summary (the API's JSON); pages and emails
    translate each form the core writes, keeping its figures."""
    site = SimpleNamespace(id="s", capacity=10)
    figures = SimpleNamespace(
        groups=2,
        last_observed_at=None,
        stale_groups=["g"],
        people=40,
        people_without_sadd=30,
    )
    as_of = datetime(2023, 9, 26, 12, tzinfo=UTC)
    written = [
        flag["message"]
        for flag in summaries._site_flags(
            site,
            figures,
            timedelta(hours=6),
            as_of,
            [{"site_id": "s", "group_id": "g", "low": 30, "high": 45}],
            [{"site_id": "s", "group_id": "g", "before": 3, "after": 12}],
        )
    ]
    assert len(written) == 6
    reader = {"people": 40, "people_without_sadd": 30, "capacity": 10}
    written += [
        suppression._reader_flag({"code": code}, reader)["message"]
        for code in ("breakdown_missing", "over_capacity", "stale_site", "unknown")
    ]
    written += [*visibility.GROUP_FLAG_MESSAGES.values(), visibility.ANY_GROUP_FLAG]
    with app.test_request_context():
        for language in OTHER:
            with force_locale(language):
                for message in written:
                    shown = i18n.flag_message(message)
                    assert shown != message, (language, message)
                    assert sorted(re.findall(r"\d+", shown)) == sorted(re.findall(r"\d+", message))
                    assert not latin_words(shown, is_html=False), (language, shown)
        with force_locale("en"):
            assert [i18n.flag_message(m) for m in written] == written


# --- the switcher ---------------------------------------------------------------------------


def page_language(response) -> str:
    found = re.search(r'<html lang="(\w+)"', response.get_data(as_text=True))
    assert found, response.get_data(as_text=True)[:200]
    return found.group(1)


def test_the_browser_language_is_used_until_the_switcher_says_otherwise(app):
    client = app.test_client()
    assert page_language(client.get("/sign-in")) == "en"
    assert page_language(client.get("/sign-in", headers={"Accept-Language": "hy"})) == "hy"
    russian = client.get("/sign-in", headers={"Accept-Language": "ru-RU,ru;q=0.9,en;q=0.5"})
    assert page_language(russian) == "ru"
    assert russian.headers["Content-Language"] == "ru"
    assert {"Accept-Language", "Cookie"} <= set(russian.headers["Vary"].replace(" ", "").split(","))
    assert "Войти" in russian.get_data(as_text=True)
    assert page_language(client.get("/sign-in", headers={"Accept-Language": "de"})) == "en"
    # By preference, each language by its primary tag.
    for header, language in [
        ("hy-AM", "hy"),
        ("en-GB,hy;q=0.8", "en"),
        ("de-DE,ru;q=0.5,hy;q=0.4", "ru"),
        ("hy;q=0.2,ru-RU;q=0.9", "ru"),
        ("ru;q=0,hy;q=0.1", "hy"),
    ]:
        response = client.get("/sign-in", headers={"Accept-Language": header})
        assert page_language(response) == language, header

    switched = client.get("/language/ru?next=/sign-in%3Fnext%3D/import")
    assert switched.status_code == 303
    assert switched.headers["Location"] == "/sign-in?next=/import"
    cookie = switched.headers["Set-Cookie"]
    assert cookie.startswith("lang=ru;")
    assert "Max-Age=31536000" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
    assert "HttpOnly" in cookie

    # The cookie wins over the browser's language, on every page.
    armenian_browser = {"Accept-Language": "hy"}
    assert page_language(client.get("/sign-in", headers=armenian_browser)) == "ru"
    client.get("/language/hy?next=/sign-in")
    assert page_language(client.get("/sign-in", headers={"Accept-Language": "ru"})) == "hy"
    client.get("/language/en?next=/sign-in")
    assert page_language(client.get("/sign-in", headers=armenian_browser)) == "en"


def test_the_switcher_sends_back_to_this_site_only_and_knows_three_languages(app):
    client = app.test_client()
    for target in ("//evil.example/", "https://evil.example/", "/\\evil.example", ""):
        response = client.get("/language/hy", query_string={"next": target})
        assert response.status_code == 303
        assert response.headers["Location"] == "/", target
    unknown = client.get("/language/de?next=/sign-in")
    assert unknown.status_code == 404
    assert "lang=" not in unknown.headers.get("Set-Cookie", "")
    # A cookie the switcher did not set is ignored.
    client.set_cookie("lang", "de")
    assert page_language(client.get("/sign-in", headers={"Accept-Language": "ru"})) == "ru"


def test_the_switcher_is_on_the_dashboard_sign_in_and_unsubscribe_pages(app, auth):
    admin = signed_in(app, auth.token("admin"))
    subscription = subscribe(app.test_client(), auth.admin)
    with app.app_context():
        token = subscriptions_domain.unsubscribe_token(uuid.UUID(subscription["id"]))
    pages = [
        (app.test_client(), "/sign-in"),
        (admin, "/"),
        (admin, "/import"),
        (app.test_client(), f"/unsubscribe?token={token}"),
    ]
    for client, path in pages:
        html = client.get(path).get_data(as_text=True)
        links = dict(
            re.findall(r'<a href="(/language/(?:en|hy|ru)\?next=[^"]+)"[^>]*>([^<]+)<', html)
        )
        assert sorted(links.values()) == ["English", "Русский", "Հայերեն"], path
        for href in links:
            # Back to this very page, in the chosen language, with no script.
            response = client.get(href.replace("&amp;", "&"))
            assert response.status_code == 303 and response.headers["Location"] == path


# --- every page, in hy and in ru ------------------------------------------------------------


def in_languages(client, path: str, **kwargs) -> dict[str, str]:
    """The page at `path` in each language (the switcher's cookie), back to English after."""
    pages = {}
    for language in i18n.LANGUAGES:
        client.set_cookie("lang", language)
        response = client.get(path, **kwargs)
        assert response.status_code < 500, response.get_data(as_text=True)
        html = response.get_data(as_text=True)
        assert f'<html lang="{language}">' in html
        pages[language] = html
    client.delete_cookie("lang")
    return pages


def assert_translated(pages: dict[str, str], allow=(), name: str = "") -> None:
    for language in OTHER:
        assert untranslated(pages["en"], pages[language], [*DATA, *allow]) == [], (name, language)
        assert latin_words(pages[language], [*DATA, *allow]) == [], (name, language)


def test_the_sign_in_page_and_its_error_read_wholly_in_hy_and_ru(app):
    client = app.test_client()
    assert_translated(in_languages(client, "/sign-in"), name="sign-in")
    pages = {}
    for language in i18n.LANGUAGES:
        client.set_cookie("lang", language)
        wrong = client.post(
            "/sign-in", data={"token": "nt_guess", "csrf_token": csrf_token(client)}
        )
        assert wrong.status_code == 401
        pages[language] = wrong.get_data(as_text=True)
    assert_translated(pages, name="sign-in refused")


def test_the_overview_with_a_summary_reads_wholly_in_hy_and_ru(app, client, auth):
    a_situation(app, client, auth)
    # A suspended subscription, so its box on the overview is read too.
    subscription = subscribe(client, auth.admin)
    with app.app_context():
        row = db.session.get_one(Subscription, uuid.UUID(subscription["id"]))
        row.suspended_at = datetime.now(UTC)
        row.suspended_reason = "The mail server refused the address 3 times in a row."
        db.session.commit()
    admin = signed_in(app, auth.token("admin"))
    pages = in_languages(admin, "/")
    # The reason is the mail server's own words (stored as it answered).
    reason = "The mail server refused the address 3 times in a row."
    assert_translated(pages, allow=[reason, "sitrep@ngo.example.org"], name="overview")
    russian = pages["ru"]
    assert "Обстановка на" in russian and "Уехали" in russian
    # Figures and months by Babel for the language: a no-break space between thousands.
    assert "1\xa0055" in russian  # 715 + 300 + 40 people
    month = datetime.now(UTC).strftime("%b")
    assert month not in " ".join(visible_texts(russian))
    assert "1,055" in pages["en"] and month in pages["en"]
    # Readers see the same page with flags told without groups: also translated.
    reader = signed_in(app, auth.token("reader"))
    assert_translated(in_languages(reader, "/"), name="overview for a reader")


def test_the_overview_without_a_summary_reads_wholly_in_hy_and_ru(app, auth):
    coordinator = signed_in(app, auth.token("coordinator", CENTRE))
    pages = in_languages(coordinator, "/")
    assert "No summary yet" in pages["en"]
    assert_translated(pages, name="no summary")


def test_the_import_pages_read_wholly_in_hy_and_ru(app, client, auth):
    group = create_group(client, auth.admin, CENTRE)
    secret = auth.token("admin")
    admin = signed_in(app, secret)
    assert_translated(in_languages(admin, "/import"), name="import form")
    # A finished import's page (run here as a worker would).
    when = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    content = f"group_id,observed_at,total\n{group['id']},{when},120\n".encode()
    with app.test_request_context():
        job_id = import_runs.start_upload(caller_for_secret(secret), content, "day one.csv").id
        import_runs.run_import(job_id)
    pages = in_languages(admin, f"/import/{job_id}")
    assert "Done: every row" in pages["en"]
    assert_translated(pages, name="import job")
    # A file refused at once, and a too large one: the page says so in the language.
    refused = {}
    for language in i18n.LANGUAGES:
        admin.set_cookie("lang", language)
        response = admin.post(
            "/import",
            data={"csrf_token": csrf_token(admin, "/import")},
            content_type="multipart/form-data",
        )
        assert response.status_code == 422
        refused[language] = response.get_data(as_text=True)
    assert_translated(refused, name="import without a file")


def test_error_pages_read_wholly_in_hy_and_ru(app, auth):
    admin = signed_in(app, auth.token("admin"))
    assert_translated(in_languages(admin, f"/import/{uuid.uuid4()}"), name="404")
    example = re.compile(r"`at`|\d{4}-\d\d-\d\dT[\d:]+Z")  # the parameter, as it is written
    assert_translated(in_languages(admin, "/?at=yesterday"), [example], name="400 at")
    reader = signed_in(app, auth.token("reader"))
    pages = in_languages(reader, "/import")
    assert "Not for this token" in pages["en"]
    assert_translated(pages, name="403")
    # A form without its CSRF token.
    expired = {}
    for language in i18n.LANGUAGES:
        admin.set_cookie("lang", language)
        expired[language] = admin.post("/request-summary").get_data(as_text=True)
    assert "form expired" in expired["en"]
    # Its switcher goes back to a page that can be read (the form's address is POST only).
    assert 'href="/language/hy?next=%2F"' in expired["en"]
    assert_translated(expired, name="CSRF")


def test_the_admin_pages_read_wholly_in_hy_and_ru(app, client, auth):
    group = create_group(client, auth.admin, CENTRE, label="School 5 families")
    post_report(client, auth.admin, group["id"], 40, 1)
    admin = signed_in(app, auth.token("admin", name="Lead"))
    auth.token("coordinator", CENTRE, name="Anna, centre")
    # Names, an example id and the P-code (OCHA's word, kept in every language).
    names = ["Lead", "Anna, centre", "test admin", "goris-school-3", re.compile(r"\bP-")]
    for path in ("/tokens", "/sites", "/groups", f"/sites/{CENTRE}/groups"):
        assert_translated(in_languages(admin, path), names, name=path)
    created = {}
    for language in i18n.LANGUAGES:
        admin.set_cookie("lang", language)
        response = admin.post(
            "/tokens",
            data={
                "csrf_token": csrf_token(admin, "/tokens"),
                "role": "coordinator",
                "site": CENTRE,
                "name": "Anna, centre",
            },
        )
        assert response.status_code == 200, response.get_data(as_text=True)
        created[language] = response.get_data(as_text=True)
    link = re.compile(r"\S*/field/#token=\S*")
    # The header's own words, as the API is called.
    assert_translated(created, [*names, link, "Authorization: Bearer"], name="token created")


def test_the_unsubscribe_pages_read_wholly_in_hy_and_ru(app, client, auth):
    subscription = subscribe(client, auth.admin, site_ids=[CENTRE])
    with app.app_context():
        token = subscriptions_domain.unsubscribe_token(uuid.UUID(subscription["id"]))
    allow = ["sitrep@ngo.example.org"]
    path = f"/unsubscribe?token={token}"
    pages = in_languages(client, path)
    assert "Stop sending situation reports" in pages["en"]
    assert_translated(pages, allow, name="unsubscribe confirm")
    assert_translated(in_languages(client, "/unsubscribe?token=bad"), allow, name="invalid link")
    client.set_cookie("lang", "hy")
    done = client.post(path).get_data(as_text=True)
    assert '<html lang="hy">' in done and "sitrep@ngo.example.org" in done
    assert not latin_words(done, allow)
    pages = in_languages(client, path)
    assert "already unsubscribed" in pages["en"]
    assert_translated(pages, allow, name="unsubscribe already")


# --- the email, in the subscription's language ----------------------------------------------


def test_a_subscription_has_a_language_english_by_default(client, auth):
    english = subscribe(client, auth.admin)
    assert english["language"] == "en"
    armenian = subscribe(client, auth.admin, language="hy")
    assert armenian["language"] == "hy"
    listed = client.get("/api/v1/subscriptions", headers=auth.admin).get_json()
    assert {s["id"]: s["language"] for s in listed} == {english["id"]: "en", armenian["id"]: "hy"}
    for wrong in ("de", "HY", "", None, 7):
        response = client.post(
            "/api/v1/subscriptions",
            json={
                "email": "a@ngo.example.org",
                "cron": "0 7 * * *",
                "timezone": "UTC",
                "language": wrong,
            },
            headers=auth.admin,
        )
        assert response.status_code == 422, wrong
        assert response.mimetype == "application/problem+json"
        assert [e["field"] for e in response.get_json()["errors"]] == ["language"]
    assert len(client.get("/api/v1/subscriptions", headers=auth.admin).get_json()) == 2


def outbox_message(app, delivery_id: str):
    folder = Path(app.config["INSTANCE_PATH"]) / "outbox"
    (path,) = [p for p in folder.glob("*.eml") if delivery_id in p.name]
    return message_from_bytes(path.read_bytes(), policy=policy.default)


def test_the_report_email_is_written_in_the_subscriptions_language(app, client, auth):
    admin = auth.admin
    hangar = create_group(client, admin, AIRPORT, label="Hangar 1")
    school = create_group(client, admin, CENTRE, label="School 5")
    post_report(client, admin, hangar["id"], 5000, 1, needs=[{"sector": "water", "severity": 4}])
    post_report(client, admin, school["id"], 40, 1)
    summary_now(app, client, admin, build_here=True)
    letters = {}
    for language in i18n.LANGUAGES:
        subscription = subscribe(client, admin, language=language, formats=["csv"])
        sent = client.post(f"/api/v1/subscriptions/{subscription['id']}/send", headers=admin)
        assert sent.status_code == 202
        delivery_id = sent.get_json()["id"]
        with app.app_context():
            assert attempt_delivery(uuid.UUID(delivery_id)).status == "sent"
        letters[language] = outbox_message(app, delivery_id)

    subjects = {language: str(m["Subject"]) for language, m in letters.items()}
    assert re.fullmatch(
        r"Situation \d+ \w{3} \d{4}, \d\d:\d\d \+04: 5,040 people waiting", subjects["en"]
    )
    assert subjects["ru"].startswith("Обстановка ") and "ждут 5\xa0040 чел." in subjects["ru"]
    assert subjects["hy"].startswith("Իրավիճակ ") and "սպասում են 5\xa0040 մարդ" in subjects["hy"]

    def parts(message) -> tuple[str, str]:
        text = message.get_body(preferencelist=("plain",)).get_content()
        html = message.get_body(preferencelist=("html",)).get_content()
        return text, html

    english_text, english_html = parts(letters["en"])
    assert "water (severity 4, 1 group)" in english_text and "5,040" in english_text
    allow = [*DATA, "Hangar 1", "School 5", "sitrep@ngo.example.org", re.compile(r"\S+/api/v1/\S+")]
    for language in OTHER:
        text, html = parts(letters[language])
        assert f'<html lang="{language}">' in html
        assert untranslated(english_html, html, allow) == [], language
        assert latin_words(html, allow) == [], language
        # The plain-text part too: no English word left but the allowed names.
        assert latin_words(text, allow, is_html=False) == [], language
        assert "5\xa0040" in text and "5,040" not in text
    assert "вода (уровень 4, 1 группа)" in parts(letters["ru"])[0]
    assert "ջուր (աստիճան 4, 1 խումբ)" in parts(letters["hy"])[0]


@pytest.mark.parametrize("language", OTHER)
def test_numbers_and_dates_follow_the_language(app, language):
    moment = datetime(2023, 9, 26, 14, 5, tzinfo=UTC)
    with app.test_request_context(headers={"Accept-Language": language}):
        assert i18n.current_language() == language
        assert i18n.number(5040) == "5\xa0040"
        assert i18n.number(1234.56, decimals=1) == "1\xa0234,6"
        assert i18n.moment(moment) != "26 Sep 2023, 14:05"
        assert i18n.moment(moment).endswith("2023, 14:05")
    with app.test_request_context():
        assert i18n.number(5040) == "5,040"
        assert i18n.moment(moment) == "26 Sep 2023, 14:05"


def test_the_field_app_reads_wholly_in_hy_and_ru_and_so_do_its_scripts_messages(app):
    client = app.test_client()
    pages = in_languages(client, "/field/")
    # A browser feature, a command and the browser's own OK button keep their names.
    names = [re.compile(r"JavaScript-?"), "needs-tracker import", "OK"]
    assert_translated(pages, allow=names, name="field shell")
    found = re.compile(r'<script type="application/json" id="field-messages">(.*?)</script>', re.S)
    messages = {
        language: json.loads(html.unescape(found.search(page).group(1)))
        for language, page in pages.items()
    }
    assert len(messages["en"]) > 50
    for language in OTHER:
        assert messages[language].keys() == messages["en"].keys()
        for key, english in messages["en"].items():
            text = messages[language][key]
            words = PLACEHOLDER.sub("", text)
            wrong = latin_words(f"<p>{html.escape(words)}</p>", [*DATA, *names])
            assert wrong == [], (language, key, text)
            if re.search(r"[A-Za-z]{3}", english):
                assert text != english, (language, key)
