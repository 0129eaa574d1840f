"""The OpenAPI schema is valid and documents every status code, and the running API keeps to it:
schemathesis sends generated requests of every method to every route, as the owner of real
jobs, and no answer may be a server error, an undocumented status code, or a body or content
type the schema does not describe."""

import subprocess
import sys

import pytest
from django.core.management import call_command

from tests.helpers import ROOT


def test_every_operation_documents_its_errors(tmp_path):
    import yaml

    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--file", str(out))
    schema = yaml.safe_load(out.read_text())
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            codes = set(operation["responses"])
            assert {"400", "401", "429"} <= codes, (method, path, codes)
            if "{" in path:
                assert "404" in codes, (method, path)


def test_schema_generates_without_warnings(tmp_path):
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    text = out.read_text()
    for path in (
        "/api/v1/jobs/",
        "/api/v1/jobs/{job_id}/metrics/",
        "/api/v1/models/",
        "/api/v1/jobs/{job_id}/results/",
    ):
        assert f"{path}:" in text


@pytest.mark.production
@pytest.mark.django_db(transaction=True)
def test_the_running_api_matches_its_schema(hub_env, alice):
    from tests import factories

    factories.link_job(alice)
    factories.customization_job(alice)
    result = subprocess.run(
        [
            sys.executable, "-m", "schemathesis.cli", "run", f"{hub_env['HUB_URL']}/api/schema/",
            "-H", f"Authorization: Token {hub_env['HUB_API_TOKEN']}",
            "--checks",
            "not_a_server_error,status_code_conformance,response_schema_conformance,"
            "content_type_conformance",
            "--max-examples", "15", "--suppress-health-check", "all",
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


@pytest.mark.parametrize(
    "path", ["/api/v1/jobs/%20bad/", "/api/v1/nothing/", "/v1/customization/x/y"]
)
def test_an_api_address_no_route_matches_answers_json(alice, path):
    from tests.security.access import api

    response = api(alice).get(path)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"message": "Not found.", "field": None, "errors": {}}
