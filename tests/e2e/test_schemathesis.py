"""schemathesis against the gateway's own OpenAPI document (``GET /openapi.json``), with a
real key, on a real ``izzi-proxy serve --mock`` (the bundled catalog, every model
answering): no 5xx, every status and content type documented, every answer and error in
its documented schema. Bounded here; ``IZZI_SCHEMATHESIS_EXAMPLES`` raises it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.conftest import free_port

EXAMPLES = os.environ.get("IZZI_SCHEMATHESIS_EXAMPLES", "12")
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,negative_data_rejection"


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "izzi_proxy", *args], capture_output=True, text=True, timeout=60,
                          env=env, check=True)  # fmt: skip


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, str]]:
    env = {**os.environ, "IZZI_DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3", "IZZI_LOG_LEVEL": "warning"}
    overrides = ("--override=rpm=1000000", "--override=concurrent=1000", "--override=daily=100000000")
    cli("accounts", "create", "schemathesis", "--plan", "ultra", *overrides, env=env)
    key = cli("keys", "create", "--name", "st", "--account", "schemathesis", env=env).stdout.strip()
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "izzi_proxy", "serve", "--mock", "--port", str(port)],
                               env=env, stderr=subprocess.PIPE, text=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                if requests.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                if process.poll() is not None:
                    raise AssertionError(process.stderr.read() if process.stderr else "the gateway exited") from None
                time.sleep(0.05)
        yield url, key
    finally:
        process.terminate()
        process.communicate(timeout=30)  # waits, and closes its stderr


def test_the_document_is_served_without_a_key(served) -> None:
    url, _ = served
    document = requests.get(url + "/openapi.json", timeout=5).json()
    assert document["openapi"].startswith("3.1") and "/v1/chat/completions" in document["paths"]


@pytest.mark.timeout(600)
def test_schemathesis_finds_nothing(served, tmp_path: Path) -> None:
    url, key = served
    report = tmp_path / "report"
    result = subprocess.run(
        [str(SCHEMATHESIS), "run", f"{url}/openapi.json", "--header", f"Authorization: Bearer {key}",
         "--checks", CHECKS, "--max-examples", EXAMPLES, "--seed", "1", "--request-timeout", "20",
         "--phases", "examples,coverage,fuzzing", "--no-color", "--report", "junit", "--report-dir", str(report)],
        capture_output=True, text=True, timeout=540,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
    assert "passed" in result.stdout.lower(), result.stdout[-3000:]
