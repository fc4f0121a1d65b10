"""The Gemini API dialect, with Google's own google-genai SDK as the client, for models
served by an OpenAI-format, an Anthropic-format and a Gemini-format upstream (the fakes)."""

from __future__ import annotations

import base64

import aiohttp
import orjson
import pytest
from google.genai import errors, types

from izzi_proxy.keys import CONFIG
from izzi_proxy.testing.gemini import signed_by_fake

pytestmark = pytest.mark.asyncio

# catalog model -> what serves it: an OpenAI-format, an Anthropic-format, a Gemini upstream
BACKENDS = {"openai": "tools", "anthropic": "claude-tools", "gemini": "gemini-tools"}
ECHO = {"openai": "gpt-4o", "anthropic": "claude", "gemini": "gemini-flash"}
PNG_1X1 = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)

# Google's placeholder signature, as bytes (the SDK writes them in base64: the very string)
PLACEHOLDER = base64.urlsafe_b64decode("skip_thought_signature_validator")

WEATHER = types.FunctionDeclaration(
    name="get_weather",
    description="The weather in a city",
    parameters=types.Schema(
        type=types.Type.OBJECT,
        properties={"city": types.Schema(type=types.Type.STRING)},
        required=["city"],
    ),
)


@pytest.fixture(params=list(ECHO))
def backend(request) -> str:
    return request.param


async def test_generate(gateway, backend):
    client = gateway.gemini()
    answer = await client.aio.models.generate_content(
        model=ECHO[backend],
        contents="Hello there",
        config=types.GenerateContentConfig(system_instruction="Be brief", max_output_tokens=200, temperature=0.5),
    )
    assert "Hello there" in answer.text
    assert answer.candidates[0].finish_reason == types.FinishReason.STOP
    assert answer.model_version == ECHO[backend]  # the asked name, never the upstream's
    usage = answer.usage_metadata
    assert usage.prompt_token_count > 0 and usage.candidates_token_count > 0
    assert usage.total_token_count >= usage.prompt_token_count + usage.candidates_token_count
    records = await gateway.records()
    assert records[0].model == ECHO[backend] and records[0].usage_source == "reported"
    assert records[0].usage.output_tokens > 0


async def test_system_instruction_reaches_the_upstream(gateway, backend):
    client = gateway.gemini()
    await client.aio.models.generate_content(
        model=ECHO[backend], contents="Hi", config=types.GenerateContentConfig(system_instruction="Speak Vietnamese")
    )
    if backend == "openai":
        assert gateway.received[-1].body["messages"][0] == {"role": "system", "content": "Speak Vietnamese"}
    elif backend == "anthropic":
        assert gateway.anthropic_received[-1].body["system"] == "Speak Vietnamese"
    else:  # passthrough: the body as the SDK wrote it
        assert gateway.gemini_received[-1].body["systemInstruction"]["parts"] == [{"text": "Speak Vietnamese"}]


async def test_stream(gateway, backend):
    client = gateway.gemini()
    chunks = [
        chunk
        async for chunk in await client.aio.models.generate_content_stream(model=ECHO[backend], contents="Stream me")
    ]
    assert len(chunks) > 2
    text = "".join(chunk.text or "" for chunk in chunks)
    assert text.startswith("Echo: Stream me") or "Stream me" in text
    assert all(chunk.model_version == ECHO[backend] for chunk in chunks)
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    assert chunks[-1].usage_metadata.candidates_token_count > 0
    records = await gateway.records()
    assert records[0].stream and records[0].usage_source == "reported" and records[0].status == 200


async def test_json_array_stream_without_alt_sse(gateway, backend):
    """Without ``?alt=sse`` Google streams one JSON array, written as it goes."""
    url = gateway.server.make_url(f"/v1beta/models/{ECHO[backend]}:streamGenerateContent")
    body = {"contents": [{"role": "user", "parts": [{"text": "Array me"}]}]}
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, json=body, headers={"x-goog-api-key": gateway.key}) as response,
    ):
        assert response.status == 200
        assert response.content_type == "application/json"
        objects = orjson.loads(await response.read())
    assert isinstance(objects, list) and len(objects) > 1
    assert "Array me" in "".join(p.get("text", "") for o in objects for p in o["candidates"][0]["content"]["parts"])
    assert objects[-1]["candidates"][0]["finishReason"] == "STOP" and "usageMetadata" in objects[-1]


async def test_function_call_round_trip_with_parallel_calls_to_one_tool(gateway, backend):
    """Two calls to one tool in one turn, answered in the opposite order: each result must
    reach the upstream paired with its own call (by id), not by the tool's name."""
    client = gateway.gemini()
    config = types.GenerateContentConfig(tools=[types.Tool(function_declarations=[WEATHER])])
    prompt = 'call get_weather {"city": "Hanoi"} and call get_weather {"city": "Hue"}'
    first = await client.aio.models.generate_content(model=BACKENDS[backend], contents=prompt, config=config)
    calls = first.function_calls
    assert [call.args for call in calls] == [{"city": "Hanoi"}, {"city": "Hue"}]
    assert all(call.name == "get_weather" for call in calls)
    if backend != "gemini":  # translated calls carry the upstream's ids; Gemini's own may have none
        assert len({call.id for call in calls}) == 2 and all(calls[0].id for call in calls)
    history = [
        types.Content(role="user", parts=[types.Part(text=prompt)]),
        first.candidates[0].content,
        types.Content(
            role="user",
            parts=[
                types.Part(
                    function_response=types.FunctionResponse(
                        id=call.id, name=call.name, response={"output": f"sunny in {call.args['city']}"}
                    )
                )
                for call in (calls if backend == "gemini" else reversed(calls))  # Gemini pairs by order
            ],
        ),
    ]
    second = await client.aio.models.generate_content(model=BACKENDS[backend], contents=history, config=config)
    assert "sunny in Hue" in second.text and "sunny in Hanoi" in second.text
    if backend == "openai":
        messages = gateway.received[-1].body["messages"]
        ids = [c["id"] for c in messages[1]["tool_calls"]]
        results = {m["tool_call_id"]: m["content"] for m in messages if m["role"] == "tool"}
        assert results == {ids[0]: "sunny in Hanoi", ids[1]: "sunny in Hue"}
    elif backend == "anthropic":
        messages = gateway.anthropic_received[-1].body["messages"]
        ids = [b["id"] for b in messages[1]["content"] if b["type"] == "tool_use"]
        results = {b["tool_use_id"]: b["content"][0]["text"] for b in messages[2]["content"]}
        assert results == {ids[0]: "sunny in Hanoi", ids[1]: "sunny in Hue"}
    else:  # the model turn went back as it came, its thought signature intact
        sent = gateway.gemini_received[-1].body["contents"][1]["parts"][0]
        assert signed_by_fake(sent["thoughtSignature"], "get_weather")


async def test_function_responses_without_ids_pair_in_order(gateway, backend):
    """A client that keeps no ids (raw REST users) gets its results paired per tool, in order."""
    client = gateway.gemini()
    config = types.GenerateContentConfig(tools=[types.Tool(function_declarations=[WEATHER])])
    history = [
        types.Content(role="user", parts=[types.Part(text="Weather in two cities?")]),
        types.Content(
            role="model",
            parts=[
                types.Part(
                    function_call=types.FunctionCall(name="get_weather", args={"city": "Hanoi"}),
                    thought_signature=PLACEHOLDER,
                ),
                types.Part(function_call=types.FunctionCall(name="get_weather", args={"city": "Hue"})),
            ],
        ),
        types.Content(
            role="user",
            parts=[
                types.Part(function_response=types.FunctionResponse(name="get_weather", response={"output": "rain"})),
                types.Part(function_response=types.FunctionResponse(name="get_weather", response={"output": "sun"})),
            ],
        ),
    ]
    answer = await client.aio.models.generate_content(model=BACKENDS[backend], contents=history, config=config)
    assert "rain" in answer.text and "sun" in answer.text
    if backend == "openai":
        messages = gateway.received[-1].body["messages"]
        ids = [c["id"] for c in messages[1]["tool_calls"]]
        assert [(m["tool_call_id"], m["content"]) for m in messages[2:]] == [(ids[0], "rain"), (ids[1], "sun")]


async def test_streamed_function_calls_arrive_whole(gateway, backend):
    client = gateway.gemini()
    config = types.GenerateContentConfig(tools=[types.Tool(function_declarations=[WEATHER])])
    chunks = [
        chunk
        async for chunk in await client.aio.models.generate_content_stream(
            model=BACKENDS[backend], contents='call get_weather {"city": "Da Nang"}', config=config
        )
    ]
    calls = [call for chunk in chunks for call in chunk.function_calls or []]
    assert len(calls) == 1 and calls[0].args == {"city": "Da Nang"} and calls[0].name == "get_weather"


async def test_image_input(gateway, backend):
    client = gateway.gemini()
    answer = await client.aio.models.generate_content(
        model=ECHO[backend], contents=[types.Part.from_bytes(data=PNG_1X1, mime_type="image/png"), "What is this?"]
    )
    assert "[1 image(s)]" in answer.text
    if backend == "openai":
        content = gateway.received[-1].body["messages"][-1]["content"]
        assert content[0]["image_url"]["url"].startswith("data:image/png;base64,")


async def test_count_tokens(gateway, backend):
    client = gateway.gemini()
    counted = await client.aio.models.count_tokens(model=ECHO[backend], contents="Count these words for me please")
    assert counted.total_tokens > 0
    record = (await gateway.records())[0]
    # Google and Anthropic count themselves; the OpenAI-format upstream cannot (estimated here)
    assert record.upstream == {"openai": None, "anthropic": "claude", "gemini": "gemini"}[backend]
    if backend == "gemini":
        sent = gateway.gemini_received[-1]
        assert sent.path == "/v1beta/models/gemini-2.5-flash-echo:countTokens"
        assert sent.body["generateContentRequest"]["model"] == "models/gemini-2.5-flash-echo"


async def test_count_tokens_header_says_how(gateway):
    body = {"generateContentRequest": {"model": "models/x", "contents": [{"parts": [{"text": "Count me"}]}],
                                       "systemInstruction": {"parts": [{"text": "Be brief"}]}}}  # fmt: skip
    async with aiohttp.ClientSession() as session:
        for model, how in (("gemini-flash", "exact"), ("claude", "exact"), ("gpt-4o", "estimated")):
            url = gateway.server.make_url(f"/v1beta/models/{model}:countTokens")
            async with session.post(url, json=body, headers={"x-goog-api-key": gateway.key}) as response:
                assert response.status == 200, await response.text()
                assert response.headers["x-izzi-token-count"] == how
                assert (await response.json())["totalTokens"] > 0


async def test_model_list_and_get(gateway):
    client = gateway.gemini()
    names = [model.name async for model in await client.aio.models.list(config={"page_size": 5})]
    assert "models/gemini-flash" in names and "models/gpt-4o" in names
    model = await client.aio.models.get(model="claude")
    assert model.name == "models/claude" and "generateContent" in model.supported_actions


async def test_the_model_list_pages_in_geminis_shape_also_under_v1(gateway):
    headers = {"x-goog-api-key": gateway.key}
    async with aiohttp.ClientSession() as session:
        names, token = [], None
        while True:
            query = {"pageSize": "4", **({"pageToken": token} if token else {})}
            async with session.get(
                gateway.server.make_url("/v1/models").with_query(query), headers=headers
            ) as response:
                page = await response.json()
            names += [m["name"] for m in page["models"]]
            if not (token := page.get("nextPageToken")):
                break
        async with session.get(
            gateway.server.make_url("/v1beta/models").with_query(pageToken="nope"), headers=headers
        ) as response:
            assert response.status == 400 and (await response.json())["error"]["status"] == "INVALID_ARGUMENT"
        async with session.get(
            gateway.server.make_url("/v1beta/models/gemini-3.1-pro-preview"), headers=headers
        ) as response:
            assert (await response.json())["name"] == "models/gemini-tools"  # by family
    assert names == [f"models/{entry.id}" for entry in gateway.app[CONFIG].catalog]


async def test_errors_in_googles_envelope(gateway):
    client = gateway.gemini()
    with pytest.raises(errors.ClientError) as caught:
        await client.aio.models.generate_content(model="no-such-model", contents="Hi")
    assert caught.value.code == 404 and caught.value.status == "NOT_FOUND"
    assert "no-such-model" in caught.value.message
    with pytest.raises(errors.ClientError) as caught:
        await gateway.gemini(api_key="izzi-not-a-key").aio.models.generate_content(model="gpt-4o", contents="Hi")
    assert caught.value.code == 401 and caught.value.status == "UNAUTHENTICATED"
    with pytest.raises(errors.ClientError) as caught:
        await client.aio.models.generate_content(model="gemini-error-400", contents="Hi")
    assert caught.value.code == 400 and caught.value.status == "INVALID_ARGUMENT"


async def test_other_methods_answer_a_clear_404(gateway):
    url = gateway.server.make_url("/v1beta/models/gemini-flash:embedContent")
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, json={}, headers={"x-goog-api-key": gateway.key}) as response,
    ):
        assert response.status == 404
        error = (await response.json())["error"]
    assert (
        error["status"] == "NOT_FOUND" and "embedContent" in error["message"] and "generateContent" in error["message"]
    )


async def test_unknown_gemini_paths_answer_in_googles_envelope(gateway):
    async with aiohttp.ClientSession() as session:
        for method, path in (("GET", "/v1beta/cachedContents"), ("GET", "/v1beta/models/gpt-4o:generateContent")):
            async with session.request(
                method, gateway.server.make_url(path), headers={"anthropic-version": "1"}
            ) as response:
                error = (await response.json())["error"]
                assert response.status in (404, 405) and error["code"] == response.status and error["status"]
                assert "start with /v1" not in error["message"]


async def test_key_in_query_and_bearer(gateway, caplog):
    caplog.set_level("DEBUG")
    body = {"contents": [{"parts": [{"text": "Hi"}]}]}
    async with aiohttp.ClientSession() as session:
        url = gateway.server.make_url("/v1beta/models/gpt-4o:generateContent").with_query(key=gateway.key)
        async with session.post(url, json=body) as response:
            assert response.status == 200, await response.text()
        url = gateway.server.make_url("/v1/models/gpt-4o:generateContent")
        async with session.post(url, json=body, headers={"Authorization": f"Bearer {gateway.key}"}) as response:
            assert response.status == 200, await response.text()
            assert "ratelimit" in " ".join(response.headers).lower()
        url = gateway.server.make_url("/v1/chat/completions").with_query(key=gateway.key)  # Gemini routes only
        async with session.post(
            url, json={"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}
        ) as response:
            assert response.status == 401
    # a key in the URL is never logged by the gateway (the CLI's server runs without aiohttp's access log)
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name != "aiohttp.access")
    assert "izzi.access" in {r.name for r in caplog.records} and gateway.key[5:] not in logged


async def test_snake_case_body_as_in_googles_curl_examples(gateway):
    body = {
        "system_instruction": {"parts": [{"text": "Be nice"}]},
        "contents": [
            {
                "role": "user",
                "parts": [
                    {"inline_data": {"mime_type": "image/png", "data": base64.b64encode(PNG_1X1).decode()}},
                    {"text": "Look"},
                ],
            }
        ],
        "generation_config": {"max_output_tokens": 100, "stop_sequences": ["END"]},
    }
    async with aiohttp.ClientSession() as session:
        url = gateway.server.make_url("/v1beta/models/gpt-4o:generateContent")
        async with session.post(url, json=body, headers={"x-goog-api-key": gateway.key}) as response:
            assert response.status == 200, await response.text()
            answer = await response.json()
    assert "[1 image(s)]" in answer["candidates"][0]["content"]["parts"][0]["text"]
    sent = gateway.received[-1].body
    assert sent["messages"][0]["content"] == "Be nice" and sent["max_tokens"] == 100 and sent["stop"] == ["END"]


# -- other clients on a Gemini upstream (the gemini wire format) --------------------------------


async def test_chat_client_on_a_gemini_model_with_a_tool_turn(client, gateway):
    """The OpenAI SDK's tool turn toward Gemini 3: the calls go back with Google's
    placeholder signature (the fake refuses unsigned calls, as Gemini 3 does)."""
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "additionalProperties": False, "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]  # fmt: skip
    messages = [{"role": "user", "content": 'call get_weather {"city": "Hanoi"}'}]
    first = await client.chat.completions.create(model="gemini-tools", messages=messages, tools=tools)
    calls = first.choices[0].message.tool_calls
    assert first.choices[0].finish_reason == "tool_calls" and calls[0].function.name == "get_weather"
    assert first.model == "gemini-tools"
    messages += [first.choices[0].message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": calls[0].id, "content": "sunny"}]  # fmt: skip
    stream = await client.chat.completions.create(model="gemini-tools", messages=messages, tools=tools, stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert "sunny" in text
    sent = gateway.gemini_received[-1]
    assert sent.path == "/v1beta/models/gemini-3-tools:streamGenerateContent?alt=sse"
    assert sent.headers["x-goog-api-key"] == "gemini-upstream-test"
    declared = sent.body["tools"][0]["functionDeclarations"][0]["parameters"]
    assert "additionalProperties" not in declared and declared["type"] == "OBJECT"
    assert sent.body["contents"][1]["parts"][0]["thoughtSignature"] == "skip_thought_signature_validator"


async def test_anthropic_client_on_a_gemini_model(claude, gateway):
    message = await claude.messages.create(
        model="gemini-flash", max_tokens=100, system="Be brief", messages=[{"role": "user", "content": "Hello"}]
    )
    assert message.content[0].text == "Echo: Hello" and message.model == "gemini-flash"
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    async with claude.messages.stream(
        model="gemini-flash", max_tokens=100, messages=[{"role": "user", "content": "Streamed"}]
    ) as events:
        assert "".join([t async for t in events.text_stream]) == "Echo: Streamed"
    assert gateway.gemini_received[-1].body["generationConfig"]["maxOutputTokens"] == 100


async def test_a_gemini_stream_error_reaches_each_client_in_its_format(gateway, client):
    with pytest.raises(errors.APIError):
        async for _ in await gateway.gemini().aio.models.generate_content_stream(
            model="gemini-stream-error", contents="Hi there, a long enough prompt"
        ):
            pass
    record = (await gateway.records())[0]
    assert record.outcome == "error" and record.usage_source != "reported"
    import openai

    with pytest.raises(openai.APIError):
        stream = await client.chat.completions.create(
            model="gemini-stream-error", messages=[{"role": "user", "content": "Hi there, a long prompt"}], stream=True
        )
        async for _ in stream:
            pass


async def test_failover_from_a_failing_gemini_upstream(gateway):
    answer = await gateway.gemini().aio.models.generate_content(model="gemini-fallback", contents="Hi")
    assert answer.text == "Echo: Hi" and answer.model_version == "gemini-fallback"
    record = (await gateway.records())[0]
    assert record.upstream == "fake" and record.attempts == 2 and record.extra["failovers"]


async def test_thoughts_shown_only_when_asked(gateway):
    models = gateway.gemini().aio.models
    thinking = types.GenerateContentConfig(
        thinking_config=types.ThinkingConfig(include_thoughts=True, thinking_budget=2048)
    )
    answer = await models.generate_content(model="claude-thinking", contents="Think", config=thinking)
    parts = answer.candidates[0].content.parts
    assert parts[0].thought is True and parts[0].text and parts[-1].text
    assert gateway.anthropic_received[-1].body["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    quiet = types.GenerateContentConfig(thinking_config=types.ThinkingConfig(thinking_budget=2048))
    answer = await models.generate_content(model="claude-thinking", contents="Think", config=quiet)
    assert not any(p.thought for p in answer.candidates[0].content.parts)


async def test_structured_output_toward_openai(gateway):
    config = types.GenerateContentConfig(
        response_mime_type="application/json",
        response_schema=types.Schema(type=types.Type.OBJECT, properties={"ok": types.Schema(type=types.Type.BOOLEAN)}),
    )
    await gateway.gemini().aio.models.generate_content(model="gpt-4o", contents="Answer", config=config)
    sent = gateway.received[-1].body["response_format"]
    assert sent["type"] == "json_schema" and sent["json_schema"]["schema"]["properties"]["ok"] == {"type": "boolean"}


async def test_billing_and_limits_apply(gateway):
    url = gateway.server.make_url("/v1beta/models/gpt-4o:generateContent")
    body = {"contents": [{"parts": [{"text": "Hi"}]}]}
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, json=body, headers={"x-goog-api-key": gateway.key}) as response,
    ):
        assert response.status == 200
        assert "x-ratelimit-remaining-requests" in response.headers and "x-izzi-cost" in {
            h.lower() for h in response.headers
        }
    record = (await gateway.records())[0]
    assert record.cost > 0 and record.requested_model == "gpt-4o"


async def stream_objects(gateway, model: str, body: dict) -> list[dict]:
    url = gateway.server.make_url(f"/v1beta/models/{model}:streamGenerateContent").with_query(alt="sse")
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, json=body, headers={"x-goog-api-key": gateway.key}) as response,
    ):
        assert response.status == 200 and response.content_type == "text/event-stream"
        raw = await response.read()
    return [orjson.loads(line[6:]) for line in raw.split(b"\r\n") if line.startswith(b"data: ")]


@pytest.mark.parametrize("model", ["tools", "gemini-tools"])
async def test_the_streams_cost_goes_in_its_usage_metadata_not_in_function_args(gateway, model):
    tool = {"functionDeclarations": [{"name": "report", "parametersJsonSchema": {"type": "object"}}]}
    prompt = 'call report {"usage": {"tokens": 5}}'
    objects = await stream_objects(gateway, model, {"contents": [{"parts": [{"text": prompt}]}], "tools": [tool]})
    calls = [p["functionCall"] for o in objects for p in o["candidates"][0]["content"]["parts"] if "functionCall" in p]
    assert [c["args"] for c in calls] == [{"usage": {"tokens": 5}}]
    usage = objects[-1]["usageMetadata"]
    record = (await gateway.records())[0]
    assert usage["cost"] == pytest.approx(record.cost / 1_000_000) and record.cost > 0


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
async def test_claudes_thinking_survives_a_tool_turn_through_a_gemini_client(gateway, stream):
    """Claude's signed thinking rides in the first call's thought signature and comes back
    as the turn's thinking, so Claude goes on thinking (the fake checks the signature and
    its thinking-first rule); the same history sent on to Gemini 3 gets the placeholder."""
    models = gateway.gemini().aio.models
    config = types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[WEATHER])],
        thinking_config=types.ThinkingConfig(include_thoughts=True, thinking_budget=2048),
    )
    prompt = 'call get_weather {"city": "Hanoi"}'
    if stream:
        chunks = [
            c
            async for c in await models.generate_content_stream(model="claude-thinking", contents=prompt, config=config)
        ]
        parts = [p for chunk in chunks for p in chunk.candidates[0].content.parts if p.function_call or p.thought]
    else:
        first = await models.generate_content(model="claude-thinking", contents=prompt, config=config)
        parts = first.candidates[0].content.parts
    call = next(p for p in parts if p.function_call)
    assert call.thought_signature and any(p.thought for p in parts)
    history = [
        types.Content(role="user", parts=[types.Part(text=prompt)]),
        types.Content(role="model", parts=parts),
        types.Content(role="user", parts=[types.Part(function_response=types.FunctionResponse(
            id=call.function_call.id, name="get_weather", response={"output": "sunny"}))]),
    ]  # fmt: skip
    answer = await models.generate_content(model="claude-thinking", contents=history, config=config)
    assert "sunny" in answer.text
    sent = gateway.anthropic_received[-1].body
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assistant = sent["messages"][1]["content"]
    assert assistant[0]["type"] == "thinking" and assistant[0]["signature"] and assistant[1]["type"] == "tool_use"
    # the conversation moves to a Gemini 3 model: Claude's carried thinking is not Google's signature
    answer = await models.generate_content(model="gemini-tools", contents=history, config=config)
    assert "sunny" in answer.text
    model_turn = gateway.gemini_received[-1].body["contents"][1]["parts"]
    assert next(p for p in model_turn if "functionCall" in p)["thoughtSignature"] == "skip_thought_signature_validator"
