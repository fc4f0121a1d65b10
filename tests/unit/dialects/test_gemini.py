"""The Gemini dialect and wire format, piece by piece: schemas, id pairing, the request and
answer translations, the stream framings and the passthrough taps."""

from __future__ import annotations

import orjson
import pytest

from izzi_proxy import canonical as c
from izzi_proxy import sse
from izzi_proxy.dialects.gemini import GEMINI, GEMINI_WIRE, request, response, schema
from izzi_proxy.dialects.gemini.tap import GeminiArrayTap, GeminiTap
from izzi_proxy.errors import InsufficientBalance, InvalidRequest, NotFound, QuotaExceeded, UpstreamError
from izzi_proxy.testing.gemini import GeminiScript

# -- schemas ---------------------------------------------------------------------------------


def test_json_schema_to_geminis_parameters_drops_what_gemini_refuses() -> None:
    found = schema.to_gemini(
        {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "path": {"type": "string", "format": "uri", "description": "where"},
                "mode": {"const": "fast"},
                "limit": {"type": ["integer", "null"], "exclusiveMinimum": 0},
                "tags": {"type": "array", "items": {"$ref": "#/$defs/tag"}},
                "either": {"oneOf": [{"type": "string"}, {"type": "null"}]},
            },
            "required": ["path", "missing"],
            "$defs": {"tag": {"type": "string", "enum": ["a", "b"]}},
        }
    )
    assert found == {
        "type": "OBJECT",
        "properties": {
            "path": {"type": "STRING", "description": "where"},
            "mode": {"type": "STRING", "enum": ["fast"]},
            "limit": {"type": "INTEGER", "nullable": True},
            "tags": {"type": "ARRAY", "items": {"type": "STRING", "enum": ["a", "b"]}},
            "either": {"type": "STRING", "nullable": True},
        },
        "required": ["path"],
    }


def test_a_schema_without_arguments_is_left_out() -> None:
    assert schema.to_gemini({"type": "object", "properties": {}}) is None
    assert schema.to_gemini({"type": "object"}) is None


def test_self_referencing_schemas_end() -> None:
    tree = {
        "$ref": "#/$defs/node",
        "$defs": {"node": {"type": "object", "properties": {"child": {"$ref": "#/$defs/node"}}}},
    }
    found = schema.to_gemini(tree)
    depth = 0
    while "properties" in found:
        found, depth = found["properties"]["child"], depth + 1
    assert 10 < depth < 40


def test_googles_schema_to_json_schema() -> None:
    assert schema.to_json_schema(
        {"type": "OBJECT", "properties": {"n": {"type": "INTEGER", "nullable": True}}, "propertyOrdering": ["n"]}
    ) == {"type": "object", "properties": {"n": {"type": ["integer", "null"]}}}


# -- requests --------------------------------------------------------------------------------


def parse(body: dict, stream: bool = False) -> c.Request:
    return GEMINI.to_canonical(GEMINI.parse(orjson.dumps(body), "m", stream))


def call(name: str, args: dict, id: str | None = None) -> dict:
    return {"functionCall": {"name": name, "args": args} | ({"id": id} if id else {})}


def result(name: str, output: str, id: str | None = None) -> dict:
    return {"functionResponse": {"name": name, "response": {"output": output}} | ({"id": id} if id else {})}


def results_of(req: c.Request) -> list[tuple[str, str]]:
    return [(p.tool_call_id, p.content[0].text) for m in req.messages for p in m.parts if isinstance(p, c.ToolResult)]


def calls_of(req: c.Request) -> list[str]:
    return [p.id for m in req.messages for p in m.parts if isinstance(p, c.ToolCall)]


def test_function_responses_pair_by_id_in_any_order() -> None:
    req = parse({"contents": [
        {"role": "user", "parts": [{"text": "two cities"}]},
        {"role": "model", "parts": [call("w", {"c": 1}, "a"), call("w", {"c": 2}, "b")]},
        {"role": "user", "parts": [result("w", "two", "b"), result("w", "one", "a")]},
    ]})  # fmt: skip
    assert calls_of(req) == ["a", "b"] and results_of(req) == [("b", "two"), ("a", "one")]


def test_function_responses_without_ids_pair_per_name_in_order() -> None:
    req = parse({"contents": [
        {"role": "user", "parts": [{"text": "x"}]},
        {"role": "model", "parts": [call("w", {}), call("t", {}), call("w", {})]},
        {"role": "user", "parts": [result("t", "T"), result("w", "W1"), result("w", "W2")]},
    ]})  # fmt: skip
    first, time, second = calls_of(req)
    assert results_of(req) == [(time, "T"), (first, "W1"), (second, "W2")]
    assert len({first, time, second}) == 3


def test_ids_the_client_invented_for_responses_only_still_pair() -> None:
    """The call came without an id, the CLI wrote its own into the response: paired by name."""
    req = parse({"contents": [
        {"role": "user", "parts": [{"text": "x"}]},
        {"role": "model", "parts": [call("read", {})]},
        {"role": "user", "parts": [result("read", "R", "read-1796-0")]},
    ]})  # fmt: skip
    assert results_of(req) == [(calls_of(req)[0], "R")]


def test_generation_config_and_tools() -> None:
    req = parse({
        "systemInstruction": {"parts": [{"text": "Be brief"}]},
        "contents": [{"parts": [{"text": "hi"}]}],
        "tools": [{"functionDeclarations": [
            {"name": "a", "parameters": {"type": "OBJECT", "properties": {"x": {"type": "STRING"}}}},
            {"name": "b", "parametersJsonSchema": {"type": "object", "properties": {"y": {"type": "integer"}}}},
        ]}, {"googleSearch": {}}],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["b"]}},
        "generationConfig": {"temperature": 1.5, "topP": 0.9, "topK": 40, "maxOutputTokens": 99,
                             "stopSequences": ["END"], "thinkingConfig": {"thinkingBudget": 2048},
                             "responseMimeType": "application/json",
                             "responseSchema": {"type": "OBJECT", "properties": {"ok": {"type": "BOOLEAN"}}}},
    })  # fmt: skip
    assert req.system == ["Be brief"] and req.max_tokens == 99 and req.stop == ["END"]
    assert (req.temperature, req.top_p, req.top_k) == (1.5, 0.9, 40)
    assert [t.name for t in req.tools] == ["b"] and req.tool_choice == c.ToolChoice("tool", "b")
    assert req.tools[0].parameters == {"type": "object", "properties": {"y": {"type": "integer"}}}
    assert req.reasoning == c.Reasoning(budget_tokens=2048)
    assert req.response_format == {
        "type": "json_schema",
        "json_schema": {"name": "response", "schema": {"type": "object", "properties": {"ok": {"type": "boolean"}}}},
    }


@pytest.mark.parametrize(
    ("thinking", "reasoning"),
    [({"thinkingBudget": 0}, None), ({"thinkingBudget": -1}, c.Reasoning(effort="medium")),
     ({"thinkingLevel": "HIGH"}, c.Reasoning(effort="high")), ({"includeThoughts": True}, None)],
)  # fmt: skip
def test_thinking_config(thinking: dict, reasoning: c.Reasoning | None) -> None:
    body = {"contents": [{"parts": [{"text": "hi"}]}], "generationConfig": {"thinkingConfig": thinking}}
    assert parse(body).reasoning == reasoning


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "contents"),
        ({"contents": []}, "contents"),
        ({"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]}, "contents[0].role"),
        ({"contents": [{"parts": [{"inlineData": {"mimeType": "image/png", "data": "not base64!"}}]}]},
         "contents[0].parts[0].inlineData.data"),
        ({"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"temperature": 3}}, "generationConfig.temperature"),
        ({"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"stopSequences": list("abcdef")}},
         "generationConfig.stopSequences"),
        ({"contents": "hi"}, "contents"),
    ],
)  # fmt: skip
def test_bad_requests_name_what_is_wrong(body: dict, param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        GEMINI.parse(orjson.dumps(body), "m", False)
    assert caught.value.param == param


def test_more_than_one_candidate_is_refused_where_it_is_translated() -> None:
    body = {"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"candidateCount": 2}}
    parsed = GEMINI.parse(orjson.dumps(body), "m", False)
    assert GEMINI.upstream_body(parsed, "gemini-2.5-pro")["generationConfig"]["candidateCount"] == 2
    with pytest.raises(InvalidRequest, match="candidateCount"):
        GEMINI.to_canonical(parsed)


def test_passthrough_signs_calls_other_models_made() -> None:
    body = {"contents": [
        {"role": "user", "parts": [{"text": "x"}]},
        {"role": "model", "parts": [{"text": "let me"}, call("read", {}, "toolu_1"), call("read", {}, "toolu_2")]},
        {"role": "user", "parts": [result("read", "R", "toolu_1"), result("read", "S", "toolu_2")]},
    ]}  # fmt: skip
    parsed = GEMINI.parse(orjson.dumps(body), "m", True)
    sent = GEMINI.upstream_body(parsed, "gemini-3-pro")
    parts = sent["contents"][1]["parts"]
    assert parts[1]["thoughtSignature"] == request.SKIP_SIGNATURE and "thoughtSignature" not in parts[2]
    assert sent["model"] == "gemini-3-pro" and "thoughtSignature" not in body["contents"][1]["parts"][1]


def test_from_canonical_toward_a_gemini_upstream() -> None:
    req = c.Request(
        model="x",
        system=["Be nice"],
        messages=[
            c.Message("user", [c.Text("hi"), c.Image("image/png", "AAAA")]),
            c.Message("assistant", [c.Thinking("hmm", "sig"), c.ToolCall("call_1", "w", '{"c": 1}')]),
            c.Message("user", [c.ToolResult("call_1", [c.Text("sunny")])]),
        ],
        tools=[
            c.Tool(
                "w",
                "weather",
                {"type": "object", "additionalProperties": False, "properties": {"c": {"type": "integer"}}},
            )
        ],
        tool_choice=c.ToolChoice("tool", "w"),
        max_tokens=50,
        stop=["Z"],
        reasoning=c.Reasoning(effort="low"),
        response_format={"type": "json_object"},
    )
    body = GEMINI_WIRE.from_canonical(req, c.Target("gemini-3-pro", reasoning=True))
    assert body["model"] == "gemini-3-pro" and body["systemInstruction"] == {"parts": [{"text": "Be nice"}]}
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "hi"}, {"inlineData": {"mimeType": "image/png", "data": "AAAA"}}]},
        {"role": "model", "parts": [{"functionCall": {"id": "call_1", "name": "w", "args": {"c": 1}},
                                     "thoughtSignature": request.SKIP_SIGNATURE}]},
        {"role": "user", "parts": [{"functionResponse": {"id": "call_1", "name": "w", "response": {"output": "sunny"}}}]},
    ]  # fmt: skip
    assert body["tools"] == [{"functionDeclarations": [
        {"name": "w", "description": "weather", "parameters": {"type": "OBJECT", "properties": {"c": {"type": "INTEGER"}}}}
    ]}]  # fmt: skip
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["w"]}}
    assert body["generationConfig"] == {
        "maxOutputTokens": 50, "stopSequences": ["Z"], "responseMimeType": "application/json",
        "thinkingConfig": {"thinkingBudget": 2048, "includeThoughts": True},
    }  # fmt: skip


# -- answers and streams -----------------------------------------------------------------------


def test_usage_both_ways() -> None:
    wire = response.WireUsage(
        prompt_token_count=100, candidates_token_count=20, thoughts_token_count=5, cached_content_token_count=30
    )
    usage = response.usage_from_wire(wire)
    assert usage == c.Usage(input_tokens=70, output_tokens=25, cache_read_tokens=30, reasoning_tokens=5)
    assert response.usage_to_wire(usage) == {
        "promptTokenCount": 100, "candidatesTokenCount": 20, "totalTokenCount": 125,
        "cachedContentTokenCount": 30, "thoughtsTokenCount": 5,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("error", "status", "name"),
    [(InvalidRequest("x"), 400, "INVALID_ARGUMENT"), (NotFound("x"), 404, "NOT_FOUND"),
     (InsufficientBalance("x", code="insufficient_balance"), 402, "FAILED_PRECONDITION"),
     (QuotaExceeded("x", retry_after_s=5), 429, "RESOURCE_EXHAUSTED"), (UpstreamError("x", upstream="u"), 502, "UNAVAILABLE")],
)  # fmt: skip
def test_errors_in_googles_envelope(error, status: int, name: str) -> None:
    body = GEMINI.error_body(error)["error"]
    assert (body["code"], body["status"]) == (status, name)
    assert body["details"][0]["metadata"]["type"] == error.type


def script(model: str, **body) -> GeminiScript:
    return GeminiScript({"contents": [{"parts": [{"text": "Hello there"}]}], **body}, model, chunks=3)


def parse_stream(data: bytes, upstream: str = "u") -> list[c.StreamEvent]:
    parser = GEMINI_WIRE.stream_parser(upstream)
    return [e for event in sse.iter_events(data) for e in parser.feed(event)]


def test_a_gemini_stream_read_as_canonical_events() -> None:
    played = script("gemini-x", generationConfig={"thinkingConfig": {"includeThoughts": True}})
    events = parse_stream(b"".join(played.frames()))
    kinds = [type(e).__name__ for e in events]
    assert kinds[0] == "Start" and kinds[-3:] == ["Finish", "UsageUpdate", "End"]
    thinking = "".join(e.value for e in events if isinstance(e, c.Delta) and e.kind == "thinking")
    text = "".join(e.value for e in events if isinstance(e, c.Delta) and e.kind == "text")
    assert thinking.startswith("The user wrote") and text == "Echo: Hello there"
    assert events[-2].usage.reasoning_tokens > 0


def test_function_calls_in_a_stream_come_whole() -> None:
    played = script("tools", tools=[{"functionDeclarations": [{"name": "f"}, {"name": "g"}]}])
    events = parse_stream(b"".join(played.frames()))
    starts = [e.part for e in events if isinstance(e, c.BlockStart) and isinstance(e.part, c.ToolCall)]
    assert [s.name for s in starts] == ["f", "g"] and len({s.id for s in starts}) == 2
    assert next(e for e in events if isinstance(e, c.Finish)).stop_reason == "tool_use"


def test_an_error_object_mid_stream_raises() -> None:
    played = script("stream_error_after_1")
    with pytest.raises(UpstreamError, match="overloaded"):
        parse_stream(b"".join(played.frames()))


@pytest.mark.parametrize("sse_framing", [True, False], ids=["sse", "array"])
def test_the_renderer_writes_gemini_streams(sse_framing: bool) -> None:
    parsed = GEMINI.parse(b'{"contents": [{"parts": [{"text": "x"}]}]}', "asked-name", True, sse_framing)
    renderer = GEMINI.stream_renderer(parsed)
    events = [
        c.Start("chatcmpl-abc", "upstream"),
        c.BlockStart(0, c.Text("")), c.Delta(0, "text", "Hel"), c.Delta(0, "text", "lo"), c.BlockStop(0),
        c.BlockStart(1, c.ToolCall("call_1", "f", "")), c.Delta(1, "arguments", '{"a":'), c.Delta(1, "arguments", "1}"),
        c.BlockStop(1), c.Finish("tool_use"), c.UsageUpdate(c.Usage(10, 5)), c.End(),
    ]  # fmt: skip
    out = b"".join(renderer.render(e) for e in events)
    objects = [orjson.loads(e.data) for e in sse.iter_events(out)] if sse_framing else orjson.loads(out)
    assert [o["candidates"][0]["content"]["parts"] for o in objects] == [
        [{"text": "Hel"}], [{"text": "lo"}], [{"functionCall": {"id": "call_1", "name": "f", "args": {"a": 1}}}],
        [{"text": ""}],
    ]  # fmt: skip
    assert {o["modelVersion"] for o in objects} == {"asked-name"} and {o["responseId"] for o in objects} == {"abc"}
    assert objects[-1]["candidates"][0]["finishReason"] == "STOP"
    assert objects[-1]["usageMetadata"] == {"promptTokenCount": 10, "candidatesTokenCount": 5, "totalTokenCount": 15}
    assert all("usageMetadata" not in o for o in objects[:-1])


def test_an_error_closes_the_json_array() -> None:
    parsed = GEMINI.parse(b'{"contents": [{"parts": [{"text": "x"}]}]}', "m", True, False)
    renderer = GEMINI.stream_renderer(parsed)
    out = renderer.render(c.Delta(0, "text", "a")) + renderer.error_frame(UpstreamError("cut", upstream="u"))
    assert orjson.loads(out)[-1]["error"]["status"] == "UNAVAILABLE"


# -- passthrough taps ----------------------------------------------------------------------------


def split_everywhere(data: bytes):
    for at in range(1, len(data), 97):
        yield [data[:at], data[at:]]


def test_the_sse_tap_relays_bytes_but_the_model_name() -> None:
    data = b"".join(script("gemini-up").frames())
    for pieces in split_everywhere(data):
        tap = GeminiTap("asked")
        out = b"".join(tap.feed(p) for p in pieces) + tap.finish()
        assert out == data.replace(b'"modelVersion":"gemini-up"', b'"modelVersion":"asked"')
        assert tap.done and tap.usage_final and tap.usage.output_tokens > 0


def test_the_array_tap_writes_one_json_array() -> None:
    frames = list(script("gemini-up").frames())
    data = b"".join(frames)
    for pieces in split_everywhere(data):
        tap = GeminiArrayTap("asked")
        out = b"".join(tap.feed(p) for p in pieces) + tap.finish()
        objects = orjson.loads(out)
        assert len(objects) == len(frames) > 2 and {o["modelVersion"] for o in objects} == {"asked"}
        assert tap.done and tap.usage is not None


# -- Claude's thinking in a thought signature ------------------------------------------------------


def test_signed_thinking_rides_in_a_signature_both_base64_alphabets() -> None:
    import base64

    from izzi_proxy.dialects.gemini import signatures

    blocks = [c.Thinking("I think", "sig/+=="), c.Thinking("unsigned"), c.RedactedThinking("opaque")]
    carrying = signatures.carry(blocks)
    assert signatures.carried(carrying) == [c.Thinking("I think", "sig/+=="), c.RedactedThinking("opaque")]
    url_safe = base64.urlsafe_b64encode(base64.b64decode(carrying)).decode()  # as the google-genai SDK sends it back
    assert signatures.carried(url_safe) == signatures.carried(carrying)
    assert signatures.carry([c.Thinking("unsigned")]) is None
    for other in ("skip_thought_signature_validator", carrying[:-8], "", "!!"):
        assert signatures.carried(other) == []


def test_a_carried_signature_becomes_the_turns_thinking() -> None:
    from izzi_proxy.dialects.gemini import signatures

    carrying = signatures.carry([c.Thinking("plan", "s1")])
    req = parse({"contents": [
        {"role": "user", "parts": [{"text": "x"}]},
        {"role": "model", "parts": [{"text": "Let me look."}, call("read", {}, "toolu_1") | {"thoughtSignature": carrying}]},
        {"role": "user", "parts": [result("read", "R", "toolu_1")]},
    ]})  # fmt: skip
    assert [type(p).__name__ for p in req.messages[1].parts] == ["Thinking", "Text", "ToolCall"]
    assert req.messages[1].parts[0] == c.Thinking("plan", "s1")


def test_the_meter_counts_gemini_text_and_args_not_signatures() -> None:
    from izzi_proxy import tokens

    pattern = tokens.OUTPUT_FIELDS["gemini"]
    call = (
        b'data: {"candidates":[{"content":{"parts":[{"functionCall":{"name":"f","args":{"city":"Hue"}},"thoughtSignature":"'
        + b"A" * 4000
        + b'"}]}}]}\r\n\r\n'
    )
    assert 14 <= tokens.output_bytes(pattern, call) < 30
    text = b'data: {"candidates":[{"content":{"parts":[{"text":"Hello"},{"text":" there"}]}}]}\r\n\r\n'
    assert tokens.output_bytes(pattern, text) == len("Hello there")
