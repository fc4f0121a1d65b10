"""Client JSON bodies within the limits the gateway can always write back out: what passes
re-encodes even under translation's headroom; what does not is a 400 naming the field."""

from __future__ import annotations

import orjson
import pytest

from izzi_proxy.bodies import ENCODER_DEPTH, MAX_DEPTH, check_encodable, decode_object
from izzi_proxy.errors import InvalidRequest


def nested(depth: int, leaf: object = 1) -> object:
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


def refused(raw: bytes) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        decode_object(raw)
    assert caught.value.status == 400
    return caught.value


def test_the_deepest_body_allowed_still_encodes_under_the_headroom() -> None:
    body = {"x": nested(MAX_DEPTH - 1)}  # the object itself is one level
    assert decode_object(orjson.dumps(body)) == body
    orjson.dumps(nested(ENCODER_DEPTH - MAX_DEPTH, body))  # what translation may wrap around it


@pytest.mark.parametrize(
    ("body", "param", "words"),
    [
        (b'{"tools": [{"input_schema": ' + orjson.dumps(nested(MAX_DEPTH)) + b"}]}", "tools[0].input_schema",
         f"deeper than {MAX_DEPTH}"),
        (b'{"max_tokens": 1000000000000000000000000000000}', "max_tokens", "out of range"),
        (b'{"model": "m", "x": {"y": [1, -9223372036854775809]}}', "x.y[1]", "out of range"),
        (b'{"n": 18446744073709551616}', "n", "out of range"),
    ],
)  # fmt: skip
def test_what_cannot_be_written_is_refused_naming_the_field(body: bytes, param: str, words: str) -> None:
    error = refused(body)
    assert error.param == param and words in error.message


@pytest.mark.parametrize("depth", [300, 1_000, 5_000, 50_000])
def test_very_deep_bodies_are_a_400_not_a_crash(depth: int) -> None:
    error = refused(b'{"a": ' + b"[" * depth + b"]" * depth + b"}")
    assert f"deeper than {MAX_DEPTH}" in error.message


@pytest.mark.parametrize("raw", [b'{"t": NaN}', b'{"t": Infinity}', b'{"t": -Infinity}', b'{"t": 1e400}'])
def test_numbers_json_has_not_are_malformed(raw: bytes) -> None:
    assert "not valid JSON" in refused(raw).message


def test_the_integer_range_is_the_encoders() -> None:
    body = {"a": 2**64 - 1, "b": -(2**63)}
    assert decode_object(orjson.dumps(body)) == body


def test_values_translation_parses_are_checked_where_they_are_made() -> None:
    with pytest.raises(InvalidRequest) as caught:
        check_encodable({"deep": nested(MAX_DEPTH)}, "tool call arguments")
    assert caught.value.param == "tool call arguments.deep[0][0]"
