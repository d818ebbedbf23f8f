"""Schemathesis drives every operation of the published OpenAPI schema through Nginx with
generated valid and invalid input: no 5xx, no response outside the schema, no valid request
rejected, no invalid one accepted. Bounded in examples and time; a fixed seed makes a failure
reproducible (`st replay` ids are printed)."""

import os

from tests.support import ROOT, run


def test_the_api_holds_to_its_openapi_schema(stack):
    token = stack.token("fuzz-staff", staff=True)["Authorization"]
    result = run(
        str(ROOT / ".venv/bin/schemathesis"),
        # Per-operation expectations (schemathesis.toml), whatever the working directory.
        "--config-file",
        str(ROOT / "schemathesis.toml"),
        "run",
        stack.url("/api/openapi.json"),
        "--header",
        f"Authorization: {token}",
        "--checks",
        "all",
        "--max-examples",
        os.environ.get("FUZZ_EXAMPLES", "25"),
        "--max-time",
        os.environ.get("FUZZ_SECONDS", "90"),
        "--seed",
        "1",
        "--no-shrink",
        check=False,
        timeout=300,
    )
    summary = result.stdout[-6000:]
    assert result.returncode == 0, summary
    assert "Tested:" in summary
