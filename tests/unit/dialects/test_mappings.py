"""The mapping tables, row by row: stop reasons, error types, usage, both directions."""

from __future__ import annotations

import orjson
import pytest

from izzi_proxy import canonical as c
from izzi_proxy.dialects.anthropic_messages import ANTHROPIC_MESSAGES, ANTHROPIC_MESSAGES_WIRE
from izzi_proxy.dialects.openai_chat import OPENAI_CHAT, OPENAI_CHAT_WIRE
from izzi_proxy.errors import (
    AuthenticationFailed,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    RequestTooLarge,
    ServerError,
    UpstreamConnectionError,
    upstream_error,
)

ANTHROPIC_TO_OPENAI = [
    ("end_turn", "stop"),
    ("stop_sequence", "stop"),
    ("pause_turn", "stop"),
    ("max_tokens", "length"),
    ("model_context_window_exceeded", "length"),
    ("tool_use", "tool_calls"),
    ("refusal", "content_filter"),
]
OPENAI_TO_ANTHROPIC = [
    ("stop", "end_turn"),
    ("length", "max_tokens"),
    ("tool_calls", "tool_use"),
    ("function_call", "tool_use"),
    ("content_filter", "refusal"),
]


def anthropic_message(stop_reason: str, usage: dict | None = None) -> bytes:
    return orjson.dumps({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "m", "content": [{"type": "text", "text": "hi"}],
        "stop_reason": stop_reason, "stop_sequence": None, "usage": usage or {"input_tokens": 1, "output_tokens": 1},
    })  # fmt: skip


def openai_completion(finish: str, usage: dict | None = None) -> bytes:
    return orjson.dumps({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": finish}],
        "usage": usage or {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    })  # fmt: skip


def parsed(dialect, model: str = "m"):
    body = {"model": model, "messages": [{"role": "user", "content": "x"}], "max_tokens": 5}
    return dialect.parse(orjson.dumps(body))


@pytest.mark.parametrize(("stop_reason", "finish"), ANTHROPIC_TO_OPENAI)
def test_anthropic_stop_reason_to_openai_finish(stop_reason: str, finish: str) -> None:
    resp = ANTHROPIC_MESSAGES_WIRE.parse_response(anthropic_message(stop_reason), "up")
    assert resp.stop_reason == stop_reason
    rendered = orjson.loads(OPENAI_CHAT.render_response(resp, parsed(OPENAI_CHAT)))
    assert rendered["choices"][0]["finish_reason"] == finish


@pytest.mark.parametrize(("finish", "stop_reason"), OPENAI_TO_ANTHROPIC)
def test_openai_finish_to_anthropic_stop_reason(finish: str, stop_reason: str) -> None:
    resp = OPENAI_CHAT_WIRE.parse_response(openai_completion(finish), "up")
    rendered = orjson.loads(ANTHROPIC_MESSAGES.render_response(resp, parsed(ANTHROPIC_MESSAGES)))
    assert rendered["stop_reason"] == stop_reason


def test_usage_anthropic_to_openai() -> None:
    usage = {
        "input_tokens": 10,
        "output_tokens": 20,
        "cache_creation_input_tokens": 30,
        "cache_read_input_tokens": 40,
    }
    resp = ANTHROPIC_MESSAGES_WIRE.parse_response(anthropic_message("end_turn", usage), "up")
    assert resp.usage == c.Usage(input_tokens=10, output_tokens=20, cache_read_tokens=40, cache_write_tokens=30)
    rendered = orjson.loads(OPENAI_CHAT.render_response(resp, parsed(OPENAI_CHAT)))["usage"]
    assert (rendered["prompt_tokens"], rendered["completion_tokens"], rendered["total_tokens"]) == (
        80,
        20,
        100,
    )
    assert rendered["prompt_tokens_details"] == {"cached_tokens": 40, "cache_write_tokens": 30}


def test_usage_openai_to_anthropic() -> None:
    usage = {"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150,
             "prompt_tokens_details": {"cached_tokens": 60}, "completion_tokens_details": {"reasoning_tokens": 20}}  # fmt: skip
    resp = OPENAI_CHAT_WIRE.parse_response(openai_completion("stop", usage), "up")
    assert resp.usage == c.Usage(input_tokens=40, output_tokens=50, cache_read_tokens=60, reasoning_tokens=20)
    rendered = orjson.loads(ANTHROPIC_MESSAGES.render_response(resp, parsed(ANTHROPIC_MESSAGES)))["usage"]
    assert rendered == {"input_tokens": 40, "output_tokens": 50, "cache_creation_input_tokens": 0,
                        "cache_read_input_tokens": 60}  # fmt: skip


ERRORS = [
    (InvalidRequest("x"), 400, "invalid_request_error"),
    (MethodNotAllowed("x"), 405, "invalid_request_error"),
    (RequestTooLarge("x"), 413, "invalid_request_error"),
    (AuthenticationFailed("x"), 401, "authentication_error"),
    (NotFound("x"), 404, "not_found"),
    (ServerError("x"), 500, "server_error"),
    (UpstreamConnectionError("x", upstream="u"), 502, "connection_error"),
    *[(upstream_error("u", status, "m"), 400, "invalid_request_error") for status in (400, 413, 422)],
    *[(upstream_error("u", status, "m"), 502, "upstream_error") for status in (401, 403, 404, 408, 429, 500, 503, 529)],
]


@pytest.mark.parametrize(("error", "status", "type_"), ERRORS, ids=lambda v: getattr(v, "message", str(v)))
def test_error_types_in_both_envelopes(error, status: int, type_: str) -> None:
    assert (error.status, error.type) == (status, type_)
    assert OPENAI_CHAT.error_body(error) == {"error": {"type": type_, "message": error.message, "param": None,
                                                       "code": None}}  # fmt: skip
    assert ANTHROPIC_MESSAGES.error_body(error) == {
        "type": "error",
        "error": {"type": type_, "message": error.message},
    }
    assert OPENAI_CHAT.stream_error(error).startswith(b'data: {"error":')
    assert ANTHROPIC_MESSAGES.stream_error(error).startswith(b'event: error\ndata: {"type":"error"')


@pytest.mark.parametrize(("status", "retryable"), [(408, True), (429, True), (500, True), (529, True), (401, True),
                                                   (403, True), (404, False), (400, False)])  # fmt: skip
def test_which_upstream_statuses_fall_back(status: int, retryable: bool) -> None:
    """401 and 403 are the operator's key at that upstream: another route may still answer."""
    assert upstream_error("u", status, "m").retryable is retryable


@pytest.mark.parametrize("status", [401, 403])
def test_an_upstream_refusing_the_gateways_key_is_named_and_nothing_more(status: int) -> None:
    error = upstream_error("xai", status, "Incorrect API key provided: bad-sk***AKQZ", "invalid_api_key")
    assert (error.status, error.type) == (502, "upstream_error")
    assert "xai" in error.message and "AKQZ" not in error.message and "Incorrect" not in error.message


def test_other_upstream_errors_keep_status_type_and_a_masked_message() -> None:
    error = upstream_error("openai", 429, "Slow down, key sk-proj-abcdefghijklmnop", "rate_limit_exceeded")
    assert error.message == ("Upstream 'openai' returned HTTP 429: Slow down, key sk-p…(masked) (rate_limit_exceeded)")
