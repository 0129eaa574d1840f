"""The OpenAPI schema is valid, and the running API keeps to it (schemathesis)."""

import subprocess
import sys

import pytest
from django.core.management import call_command

from tests.helpers import ROOT


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
            "--checks", "not_a_server_error,response_schema_conformance,content_type_conformance",
            "--max-examples", "15", "--exclude-method", "POST", "--exclude-method", "PATCH",
            "--suppress-health-check", "all",
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
