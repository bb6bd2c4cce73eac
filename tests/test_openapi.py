"""The OpenAPI document is the truth: every answer the suite receives is checked against
it (tests/openapi_check.py). Here: that check can fail, and the contracts a client
builds on are in the document."""

from __future__ import annotations

import json

import pytest
from openapi_core.contrib.werkzeug import WerkzeugOpenAPIResponse
from openapi_core.validation.response.exceptions import InvalidData

from tests.openapi_check import AnsweredRequest, CheckedClient


def test_an_answer_that_drifts_from_the_document_is_caught(app, client, auth):
    response = client.get("/api/v1/sites", headers=auth.admin)
    assert isinstance(client, CheckedClient)
    document = client._document()
    # The same answer with a site's id a number, as a drifted handler might send it.
    sites = response.get_json()
    sites[0]["id"] = 5
    response.set_data(json.dumps(sites))
    with pytest.raises(InvalidData):
        document.validate_response(
            AnsweredRequest(response.request), WerkzeugOpenAPIResponse(response)
        )


def test_the_document_states_the_contracts_clients_build_on(client, auth):
    spec = client.get("/api/v1/openapi.json").get_json()
    paths = spec["paths"]
    single = paths["/api/v1/reports"]["post"]["responses"]
    assert {"200", "201"} <= set(single)
    assert "Idempotent-Replayed" in single["200"]["description"]
    named = {p["name"] for p in paths["/api/v1/reports"]["post"]["parameters"]}
    assert "Idempotency-Key" in named
    polled = {p["name"] for p in paths["/api/v1/summaries/latest"]["get"]["parameters"]}
    assert {"If-None-Match", "format"} <= polled
    assert set(paths["/api/v1/reports/import"]["post"]["responses"]) >= {"202"}
    assert "/api/v1/imports/{job_id}" in paths
    summary = paths["/api/v1/summaries/latest"]["get"]["responses"]
    assert {"200", "304"} <= set(summary)
    assert set(summary["200"]["content"]) == {"application/json", "text/csv"}
    fields = spec["components"]["schemas"]["SummaryOut"]["properties"]
    assert {"previous_as_of", "standards", "totals", "sites", "flags"} <= set(fields)


def test_every_operation_lists_its_errors_and_no_catch_all(client):
    """Errors are documented by status, as problem+json, with no `default` that would let
    any status pass: a client and schemathesis can hold an operation to its list."""
    spec = client.get("/api/v1/openapi.json").get_json()
    components = spec["components"]["responses"]
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            responses = operation["responses"]
            assert "default" not in responses, (method, path)
            assert {"401", "403", "429", "503"} <= set(responses), (method, path)
            if "{" in path:
                assert "404" in responses, (method, path)
            if "requestBody" in operation:
                assert {"400", "413", "415", "422"} <= set(responses), (method, path)
            for status, response in responses.items():
                if status.startswith(("4", "5")):
                    name = response["$ref"].rpartition("/")[2]
                    assert set(components[name]["content"]) == {"application/problem+json"}
    for status in ("TOO_MANY_REQUESTS", "SERVICE_UNAVAILABLE"):
        assert "Retry-After" in components[status]["headers"]
