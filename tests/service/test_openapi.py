"""The OpenAPI document is the truth: schemathesis (property-based, against a live xApp over HTTP) finds no
response outside the documented codes and schemas, no 5xx, and no schema-valid request refused (except where the
rule lives between fields or on disk: see SCHEMATHESIS_CONFIG)."""

from __future__ import annotations

import asyncio
import shutil
import sys
from pathlib import Path

import pytest

from tests.service.helpers import indication, make_bundle, publish, running_xapp

# Answers to schema-valid requests that JSON Schema cannot rule out: a bundle directory that exists and loads
# (PUT /v1/models/{name}: 404 / 422 with the reason), values per measNames and KPI names this xApp's models use
# (POST /v1/predict: 422 with the reason), the cold-start limit (429).
SCHEMATHESIS_CONFIG = """
[[operations]]
include-path = "/v1/models/{name}"
include-method = "PUT"
checks.positive_data_acceptance.expected-statuses = ["2xx", 404, 422]

[[operations]]
include-path = "/v1/predict"
include-method = "POST"
checks.positive_data_acceptance.expected-statuses = ["2xx", 422, 429, 503]
"""


async def _run_schemathesis(tmp_path: Path, max_examples: int) -> tuple[int, str]:
    st = shutil.which("st", path=str(Path(sys.executable).parent))
    if st is None:
        pytest.skip("schemathesis is not installed (the dev extra)")
    config = tmp_path / "schemathesis.toml"
    config.write_text(SCHEMATHESIS_CONFIG)
    async with running_xapp([make_bundle(tmp_path, "s4d")]) as xapp:
        await publish(xapp.grpc_port, [indication(3, t, mid=t + 1) for t in range(3)])
        proc = await asyncio.create_subprocess_exec(
            st, "--no-color", "--config-file", str(config), "run", f"http://127.0.0.1:{xapp.http_port}/openapi.json",
            "--max-examples", str(max_examples), "--seed", "1", "--suppress-health-check", "all",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=tmp_path)
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=900)
    return proc.returncode, out.decode(errors="replace")


async def test_schemathesis_finds_no_failure(tmp_path):
    code, out = await _run_schemathesis(tmp_path, 4)
    assert code == 0, out[-8000:]


@pytest.mark.slow
async def test_schemathesis_finds_no_failure_in_a_long_run(tmp_path):
    code, out = await _run_schemathesis(tmp_path, 200)
    assert code == 0, out[-8000:]
