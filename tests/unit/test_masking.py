"""Secrets masked in what the gateway relays and logs; log lines nobody can forge."""

from __future__ import annotations

import logging

import pytest

from izzi_proxy.masking import SafeFormatter, escape_controls, mask_secrets


@pytest.mark.parametrize(
    ("text", "kept", "gone"),
    [
        ("Incorrect API key provided: sk-proj-Ab12Cd34Ef56Gh78", "sk-p…(masked)", "Ab12Cd34Ef56Gh78"),
        ("invalid x-api-key sk-ant-api03-AAAABBBBCCCCDDDD", "sk-a…(masked)", "BBBBCCCC"),
        ("key sk-or-v1-0123456789abcdef refused", "refused", "0123456789abcdef"),
        ("Authorization: Bearer abcdefghijklmnop1234", "Bearer abcd…(masked)", "ijklmnop1234"),
        ("Authorization: Apikey sepay0123456789key", "Apikey sepa…(masked)", "0123456789key"),
        ("https://x/?key=AIzaSyA1234567890abcdefghijklmno", "AIza…(masked)", "1234567890abcdef"),
        ('{"api_key": "0123456789secret"}', '"api_key": "0123…(masked)', "456789secret"),
        ("password=hunter2hunter2", "password=hunt…(masked)", "er2hunter2"),
        ("xai-ABCDEFGHIJKLMNOPQRSTUVWX and izzi-abcdefghijklmnopqrstuvwxyz", "xai-…(masked)", "QRSTUVWX"),
        ("token " + "Z" * 48, "ZZZZ…(masked)", "Z" * 10),
    ],
)
def test_secrets_are_masked(text: str, kept: str, gone: str) -> None:
    masked = mask_secrets(text)
    assert kept in masked and gone not in masked, masked


@pytest.mark.parametrize(
    "text",
    ["Rate limit reached for gpt-4o in organization org-abc on tokens per min", "req_0123456789abcdef01234567",
     "model claude-sonnet-4-5-20250929 is overloaded", "key=izzi-AbCdEf (prefix only)"],
)  # fmt: skip
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert mask_secrets(text) == text


def test_control_characters_are_escaped() -> None:
    assert escape_controls("a\nb\r\tc\x00d\u2028e\x1b[31m") == "a\\nb\\r\\tc\\x00d\\u2028e\\x1b[31m"


def record(message: str, *args, exc_info=None) -> logging.LogRecord:
    return logging.LogRecord("izzi.access", logging.INFO, __file__, 1, message, args, exc_info)


def test_a_forged_line_stays_inside_its_record() -> None:
    formatter = SafeFormatter("%(levelname)s %(name)s %(message)s")
    path = "/v1/models/x\n2026-12-01 00:00:00,000 INFO izzi.access req_1 GET / 200 key=admin"
    line = formatter.format(record("%s %s", "GET", path))
    assert "\n" not in line and line.startswith("INFO izzi.access GET /v1/models/x\\n2026-12-01")


def test_a_traceback_is_indented_under_its_record_and_masked() -> None:
    try:
        raise ValueError("boom\n2026-12-01 INFO forged with sk-live-0123456789abcdef")
    except ValueError:
        import sys

        out = SafeFormatter("%(levelname)s %(message)s").format(record("failed", exc_info=sys.exc_info()))
    first, *rest = out.split("\n")
    assert first == "INFO failed" and rest and all(line.startswith("  | ") for line in rest)
    assert "0123456789abcdef" not in out


def test_a_password_in_a_url_is_masked() -> None:
    from izzi_proxy.masking import mask_secrets

    assert (
        mask_secrets("Error 111 connecting to redis://:s3cr3tpw@10.0.0.9:6379")
        == "Error 111 connecting to redis://:***@10.0.0.9:6379"
    )
    assert mask_secrets("postgresql://izzi:hunter2pass@db:5432/izzi") == "postgresql://izzi:***@db:5432/izzi"
    assert mask_secrets("see https://example.com:8080/path") == "see https://example.com:8080/path"
