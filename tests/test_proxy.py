"""Behind a TLS proxy (docs/tls.md): with TRUSTED_PROXIES=1 the app takes the client's
address and the https scheme from the one proxy's X-Forwarded-For and -Proto; without it
(the default) those headers are anyone's, and ignored."""

from __future__ import annotations

import pytest
from flask import request, url_for

from tests.test_dashboard import csrf_token

PROXY = {"REMOTE_ADDR": "10.0.0.2"}  # the proxy, as the app sees it on the network


def seen_from(make_app, **settings):
    """An app (with the settings) answering what a request looks like to it, at a path
    only this test's app has."""
    app = make_app(**settings)

    @app.get("/test-only/seen")
    def seen():
        return {
            "address": request.remote_addr,
            "secure": request.is_secure,
            "sign_in": url_for("dashboard.sign_in", _external=True),
        }

    return app


def forwarded(client_address: str, proto: str = "https") -> dict[str, str]:
    return {"X-Forwarded-For": client_address, "X-Forwarded-Proto": proto}


def test_behind_one_trusted_proxy_urls_are_https_and_the_client_is_who_it_forwards(make_app):
    client = seen_from(make_app, TRUSTED_PROXIES=1).test_client()
    answer = client.get(
        "/test-only/seen", headers=forwarded("198.51.100.7"), environ_base=PROXY
    ).get_json()
    assert answer == {
        "address": "198.51.100.7",
        "secure": True,
        "sign_in": "https://localhost/sign-in",
    }
    # A client's own X-Forwarded-For comes first; the proxy appends the address it saw,
    # and only that one (the right-most) is believed.
    spoofed = client.get(
        "/test-only/seen", headers=forwarded("127.0.0.1, 198.51.100.7"), environ_base=PROXY
    ).get_json()
    assert spoofed["address"] == "198.51.100.7"
    # Without the headers (a request to the app itself, e.g. a health check): as it came.
    direct = client.get("/test-only/seen", environ_base=PROXY).get_json()
    assert direct == {"address": "10.0.0.2", "secure": False, "sign_in": "http://localhost/sign-in"}


def test_without_the_setting_the_forwarded_headers_are_ignored(make_app):
    app = seen_from(make_app)
    assert app.config["TRUSTED_PROXIES"] == 0
    answer = (
        app.test_client()
        .get("/test-only/seen", headers=forwarded("198.51.100.7"), environ_base=PROXY)
        .get_json()
    )
    assert answer == {"address": "10.0.0.2", "secure": False, "sign_in": "http://localhost/sign-in"}


@pytest.mark.parametrize("trusted", [1, 0])
def test_limits_per_address_count_the_client_behind_a_trusted_proxy(make_app, trusted):
    """Refused tokens are limited per address: behind the proxy, per client's address.
    Not trusting it, every client is the proxy's address, and one client's guesses lock
    everyone out (which is why the compose file trusts its Caddy)."""
    client = make_app(TRUSTED_PROXIES=trusted, RATELIMIT_FAILED_AUTH="2 per minute").test_client()

    def guess(address: str):
        return client.get(
            "/api/v1/sites",
            headers={"Authorization": "Bearer nt_guessed", **forwarded(address)},
            environ_base=PROXY,
        )

    assert [guess("198.51.100.7").status_code for _ in range(2)] == [401, 401]
    assert guess("198.51.100.7").status_code == 429
    # Another client behind the same proxy.
    assert guess("203.0.113.9").status_code == (401 if trusted else 429)


def test_forms_sent_over_https_need_a_same_site_referrer(make_app):
    """Once the app knows the request came over https, Flask-WTF's strict CSRF check
    applies: a form post must come from a page of this site."""
    client = make_app(TRUSTED_PROXIES=1).test_client()
    over_tls = {"headers": forwarded("198.51.100.7"), "environ_base": PROXY}
    token = csrf_token(client)
    form = {"token": "nt_unknown", "csrf_token": token}

    assert client.post("/sign-in", data=form, **over_tls).status_code == 400
    elsewhere = {**over_tls["headers"], "Referer": "https://elsewhere.example/sign-in"}
    assert (
        client.post("/sign-in", data=form, headers=elsewhere, environ_base=PROXY).status_code == 400
    )
    same_site = {**over_tls["headers"], "Referer": "https://localhost/sign-in"}
    # Past the CSRF check: the token itself is what is refused.
    assert (
        client.post("/sign-in", data=form, headers=same_site, environ_base=PROXY).status_code == 401
    )
