"""GET /api/v1/me: who a token is (role, name, sites), for the field app; never its secret."""

from __future__ import annotations

from tests.helpers import AIRPORT, CENTRE


def test_a_coordinator_sees_its_role_name_and_sites_and_not_its_secret(client, auth):
    secret = auth.token("coordinator", CENTRE, AIRPORT, name="Anahit, airport")
    response = client.get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"})

    assert response.status_code == 200
    assert response.get_json() == {
        "role": "coordinator",
        "name": "Anahit, airport",
        "site_ids": sorted([CENTRE, AIRPORT]),
        "all_sites": False,
    }
    assert secret not in response.get_data(as_text=True)


def test_an_admin_holds_every_active_site_and_a_reader_none(client, auth):
    admin = client.get("/api/v1/me", headers=auth.admin).get_json()
    assert admin["role"] == "admin" and admin["all_sites"] is True
    assert admin["site_ids"] == sorted([CENTRE, AIRPORT])

    reader = client.get("/api/v1/me", headers=auth.headers("reader")).get_json()
    assert reader["role"] == "reader" and reader["site_ids"] == [] and not reader["all_sites"]


def test_no_token_or_a_revoked_one_is_401(client, auth):
    assert client.get("/api/v1/me").status_code == 401
    unknown = client.get("/api/v1/me", headers={"Authorization": "Bearer not-a-token"})
    assert unknown.status_code == 401
    assert unknown.mimetype == "application/problem+json"


def test_me_is_in_the_openapi_document(client):
    document = client.get("/api/v1/openapi.json").get_json()
    operation = document["paths"]["/api/v1/me"]["get"]
    assert "200" in operation["responses"] and "401" in operation["responses"]
