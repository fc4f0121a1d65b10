"""The fake OpenAI Responses API (``/v1/responses`` on ``fake_openai_app``), driven by the
official ``openai`` SDK. Answers and stream events are re-validated with the SDK's own
pydantic models: a shape the SDK would merely tolerate fails here.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import openai
import pydantic
import pytest
from aiohttp.test_utils import TestServer
from openai.types.responses import Response, ResponseStreamEvent

from izzi_proxy.testing import DISCONNECTS, RECEIVED, ChatScript, ResponseScript, fake_openai_app, sign_reasoning

KEY = "sk-upstream-test"
PIXEL = "data:image/png;base64,iVBORw0KGgo="
WEATHER: Any = {"type": "function", "name": "get_weather", "description": "Weather", "strict": True,
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}  # fmt: skip
TIME: Any = {"type": "function", "name": "get_time", "strict": False,
             "parameters": {"type": "object", "properties": {"tz": {"type": "string", "enum": ["UTC", "ICT"]}}}}  # fmt: skip
EVENT: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(ResponseStreamEvent)
Client = openai.AsyncOpenAI


@pytest.fixture
async def server(aiohttp_server) -> TestServer:
    return await aiohttp_server(fake_openai_app(api_key=KEY))


@pytest.fixture
async def client(server: TestServer):
    async with Client(api_key=KEY, base_url=str(server.make_url("/v1")), max_retries=0) as c:
        yield c


def strict(response: Any) -> Response:
    return Response.model_validate(response.to_dict())


def user(*parts: Any) -> dict[str, Any]:
    content = [{"type": "input_text", "text": p} if isinstance(p, str) else p for p in parts]
    return {"role": "user", "content": content}


def replay(items: list[Any]) -> list[dict[str, Any]]:
    return [item.to_dict() for item in items]


async def ask(client: Client, input: Any = "Hello", model: str = "gpt-fake", **kw) -> Response:
    return strict(await client.responses.create(model=model, input=input, **kw))


async def events(client: Client, input: Any = "Hello there", model: str = "gpt-fake", **kw) -> list[Any]:
    got = []
    async for event in await client.responses.create(model=model, input=input, stream=True, **kw):
        assert EVENT.validate_python(event.to_dict()) == event
        got.append(event)
    assert [e.sequence_number for e in got] == list(range(len(got)))
    return got


async def final(client: Client, input: Any, **kw) -> Response:
    async with client.responses.stream(input=input, **kw) as stream:
        return strict(await stream.get_final_response())


async def test_plain_answer_echoes_like_the_chat_fake(client, server) -> None:
    resp = await ask(client, "Hello", temperature=0.5, metadata={"k": "v"}, max_output_tokens=64, user="u1")
    chat = ChatScript({"model": "gpt-fake", "messages": [{"role": "user", "content": "Hello"}]})
    assert resp.output_text == chat.text() == "Echo: Hello"
    assert resp.id.startswith("resp_") and resp.object == "response" and resp.status == "completed"
    [message] = resp.output
    assert message.type == "message" and message.id.startswith("msg_") and message.status == "completed"
    part = {"type": "output_text", "text": "Echo: Hello", "annotations": [], "logprobs": []}
    assert message.content[0].to_dict() == part
    echoed = {"model": "gpt-fake", "temperature": 0.5, "metadata": {"k": "v"}, "max_output_tokens": 64, "user": "u1",
              "parallel_tool_calls": True, "tool_choice": "auto", "truncation": "disabled", "store": True,
              "text": {"format": {"type": "text"}}, "tools": []}  # fmt: skip
    assert {k: v for k, v in resp.to_dict().items() if k in echoed} == echoed
    usage = resp.usage
    assert usage and usage.input_tokens > 0 and usage.output_tokens == 3
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert usage.input_tokens_details.cached_tokens == usage.output_tokens_details.reasoning_tokens == 0
    [received] = server.app[RECEIVED]
    assert (received.method, received.path, received.body["input"]) == ("POST", "/v1/responses", "Hello")
    assert received.headers["Authorization"] == f"Bearer {KEY}"


async def test_list_input_with_images_instructions_and_developer_message(client) -> None:
    image = {"type": "input_image", "image_url": PIXEL, "detail": "auto"}
    dev = {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "Be terse"}]}
    resp = await ask(client, [dev, user("What is", image, "this?", image)], instructions="You are a fake")
    chat = ChatScript({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is"}, {"type": "image_url", "image_url": {"url": PIXEL}},
        {"type": "text", "text": "this?"}, {"type": "image_url", "image_url": {"url": PIXEL}}]}]})  # fmt: skip
    assert resp.output_text == chat.text() == "Echo: What is this? [2 image(s)]"
    assert resp.instructions == "You are a fake"


@pytest.mark.parametrize(
    ("kw", "param", "says"),
    [
        ({"input": []}, "input", "empty array"),
        ({"input": [user({"type": "input_image", "image_url": PIXEL})]}, "input[0]", "content.0.detail: Field required"),
        ({"input": [{"type": "bogus"}]}, "input[0]", "Invalid value: 'bogus'"),
        ({"tools": [{"type": "function", "name": "f", "parameters": {}}]}, "tools[0]", "tools.0.strict: Field required"),
        ({"temperature": "hot"}, "temperature", "valid number"),
        ({"max_output_tokens": 5}, "max_output_tokens", "Expected a value >= 16"),
        ({"extra_body": {"messages": []}}, "messages", "Unknown parameter: 'messages'."),
        ({"input": [{"type": "function_call_output", "call_id": "call_x", "output": "1"}]}, "input",
         "No tool call found for function call output with call_id call_x."),
    ],
)  # fmt: skip
async def test_invalid_requests_get_400_with_the_param(client, server, kw, param, says) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await client.responses.create(**{"model": "gpt-fake", "input": "Hi", **kw})
    error = caught.value.body
    assert isinstance(error, dict) and error["type"] == "invalid_request_error"
    assert error["param"] == param and says in error["message"]
    assert len(server.app[RECEIVED]) == 1  # rejected requests are recorded too


async def test_wrong_key_is_refused(server) -> None:
    async with Client(api_key="nope", base_url=str(server.make_url("/v1")), max_retries=0) as other:
        with pytest.raises(openai.AuthenticationError):
            await other.responses.create(model="gpt-fake", input="Hi")


async def test_stream_events_in_order(client) -> None:
    got = await events(client, "Hello there")
    assert [e.type for e in got] == [
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
        *["response.output_text.delta"] * 4, "response.output_text.done", "response.content_part.done",
        "response.output_item.done", "response.completed"]  # fmt: skip
    opening = got[0].response
    assert opening.status == "in_progress" and opening.output == [] and opening.usage is None
    added = got[2].item
    assert added.type == "message" and added.status == "in_progress" and added.content == []
    text = "".join(e.delta for e in got if e.type == "response.output_text.delta")
    done = strict(got[-1].response)
    assert text == done.output_text == "Echo: Hello there" and done.id == opening.id
    assert got[-2].item == done.output[0]


async def test_stream_helper_accumulates_tools_reasoning_and_search(client) -> None:
    kw = {"tools": [WEATHER, TIME, {"type": "web_search"}], "reasoning": {"effort": "low", "summary": "auto"}}
    async with client.responses.stream(model="reasoning-tools-search", input="Weather?", **kw) as stream:
        kinds = [event.type async for event in stream]
        done = strict(await stream.get_final_response())
    assert [o.type for o in done.output] == ["reasoning", "web_search_call", "function_call", "function_call"]
    reasoning, search, weather, clock = done.output
    assert reasoning.summary[0].text == "Thinking (low) about: Echo: Weather?"
    assert search.status == "completed" and search.action.to_dict() == {"type": "search", "query": "Weather?"}
    assert (weather.name, weather.arguments) == ("get_weather", '{"city":"Hanoi"}')
    assert (clock.name, clock.arguments) == ("get_time", '{"tz":"UTC"}')  # no "required": every property
    assert kinds.count("response.function_call_arguments.delta") >= 3
    assert {"response.reasoning_summary_text.delta", "response.web_search_call.searching"} <= set(kinds)


async def test_function_call_round_trip(client) -> None:
    first = await ask(client, [user("Weather?")], model="gpt-tools", tools=[WEATHER, TIME])
    calls = [o for o in first.output if o.type == "function_call"]
    assert [c.name for c in calls] == ["get_weather", "get_time"] and calls[0].id.startswith("fc_")
    answers = zip(calls, ("Sunny", "12:00"), strict=True)
    outputs = [{"type": "function_call_output", "call_id": c.call_id, "output": out} for c, out in answers]
    turn = [user("Weather?"), *replay(calls), *outputs]
    second = await ask(client, turn, model="gpt-tools", tools=[WEATHER, TIME], store=False)
    assert second.output_text == "Tool results: Sunny; 12:00"


async def test_previous_response_id_chains_turns(client) -> None:
    first = await ask(client, "Weather?", model="gpt-tools", tools=[WEATHER])
    [call] = first.output
    assert call.type == "function_call"
    outputs = [{"type": "function_call_output", "call_id": call.call_id, "output": "Sunny"}]
    second = await ask(client, outputs, model="gpt-tools", tools=[WEATHER], previous_response_id=first.id)
    assert second.output_text == "Tool results: Sunny" and second.previous_response_id == first.id
    third = await ask(client, "Thanks", previous_response_id=second.id)
    assert third.output_text == "Echo: Thanks"
    assert third.usage and second.usage and third.usage.input_tokens > second.usage.input_tokens
    with pytest.raises(openai.BadRequestError) as caught:
        await ask(client, "Hi", previous_response_id="resp_nope")
    assert caught.value.body == {"message": "Previous response with id 'resp_nope' not found.", "type": "invalid_request_error",
                                 "param": "previous_response_id", "code": "previous_response_not_found"}  # fmt: skip


async def test_get_delete_and_store_false(client, server) -> None:
    resp = await ask(client)
    assert strict(await client.responses.retrieve(resp.id)) == resp
    url = server.make_url(f"/v1/responses/{resp.id}")
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {KEY}"}) as session:
        async with session.delete(url) as deleted:
            assert await deleted.json() == {"id": resp.id, "object": "response", "deleted": True}
        async with session.get(url) as missing:
            error = (await missing.json())["error"]
    assert missing.status == 404 and error["message"] == f"Response with id '{resp.id}' not found."
    assert error["type"] == "invalid_request_error" and error["code"] is None
    with pytest.raises(openai.NotFoundError):
        await client.responses.delete(resp.id)
    path = f"/v1/responses/{resp.id}"
    assert [(r.method, r.path) for r in server.app[RECEIVED][1:3]] == [("GET", path), ("DELETE", path)]
    unkept = await ask(client, store=False)
    assert unkept.store is False
    with pytest.raises(openai.BadRequestError, match="Previous response with id"):
        await ask(client, "Again", previous_response_id=unkept.id)
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(unkept.id)


async def test_reasoning_summary_and_encrypted_content(client) -> None:
    plain = await ask(client, "Hi", model="gpt-reasoning", reasoning={"effort": "high"})
    thought = plain.output[0]
    assert thought.type == "reasoning" and thought.summary == [] and thought.encrypted_content is None
    assert plain.usage and plain.usage.output_tokens_details.reasoning_tokens > 0
    kw = {"model": "gpt-reasoning", "reasoning": {"effort": "low", "summary": "auto"},
          "include": ["reasoning.encrypted_content"], "store": False}  # fmt: skip
    resp = await ask(client, [user("Hi")], **kw)
    reasoning, message = resp.output
    assert reasoning.summary[0].text == "Thinking (low) about: Echo: Hi"
    assert reasoning.encrypted_content == sign_reasoning(reasoning.id)
    again = await ask(client, [user("Hi"), *replay(resp.output), user("More")], **kw)
    assert again.output_text == "Echo: More"
    forged = {**reasoning.to_dict(), "encrypted_content": "enc:forged"}
    with pytest.raises(openai.BadRequestError) as caught:
        await ask(client, [user("Hi"), forged, message.to_dict(), user("More")], **kw)
    expected = f"The encrypted content for item {reasoning.id} could not be verified."
    assert caught.value.message.endswith(expected)


async def test_web_search_only_when_offered(client) -> None:
    found = await ask(client, "news", model="gpt-search", tools=[{"type": "web_search_preview"}])
    assert [o.type for o in found.output] == ["web_search_call", "message"]
    assert found.output[0].id.startswith("ws_") and found.output[0].action.query == "news"
    assert [o.type for o in (await ask(client, "news", model="gpt-search")).output] == ["message"]


async def test_length_is_incomplete(client) -> None:
    resp = await ask(client, model="gpt-length")
    assert resp.status == "incomplete" and resp.incomplete_details
    assert resp.incomplete_details.reason == "max_output_tokens" and resp.output[0].status == "incomplete"
    got = await events(client, model="gpt-length")
    assert got[-1].type == "response.incomplete" and strict(got[-1].response).status == "incomplete"
    with pytest.raises(RuntimeError, match=r"response\.completed"):  # the SDK's helper insists on completed
        await final(client, "Hi", model="gpt-length")


@pytest.mark.parametrize(
    ("status", "exc"),
    [(400, openai.BadRequestError), (401, openai.AuthenticationError), (404, openai.NotFoundError),
     (429, openai.RateLimitError), (500, openai.InternalServerError), (503, openai.InternalServerError)],
)  # fmt: skip
async def test_error_statuses(client, status, exc) -> None:
    says = "Incorrect API key provided: sk-ups" if status == 401 else f"Mock upstream error {status}"
    with pytest.raises(exc, match=says) as caught:
        await ask(client, model=f"error_{status}")
    assert caught.value.status_code == status


@pytest.mark.parametrize("after", [0, 2])
async def test_in_stream_error_raises_from_the_sdk(client, after) -> None:
    deltas = []
    stream = await client.responses.create(model=f"stream_error_after_{after}", input="Hello", stream=True)
    with pytest.raises(openai.APIError, match="Mock upstream error 500"):
        async for event in stream:
            deltas += [event.delta] if event.type == "response.output_text.delta" else []
    assert len(deltas) == after


async def test_in_stream_error_frames(server) -> None:
    body = {"model": "stream_error_after_1", "input": "Hello there", "stream": True}
    headers, url = {"Authorization": f"Bearer {KEY}"}, server.make_url("/v1/responses")
    async with aiohttp.ClientSession(headers=headers) as http, http.post(url, json=body) as resp:
        frames = [frame.split("\n") for frame in (await resp.text()).strip().split("\n\n")]
    names = [event.removeprefix("event: ") for event, _ in frames]
    data = [json.loads(line.removeprefix("data: ")) for _, line in frames]
    assert names[-3:] == ["response.output_text.delta", "error", "response.failed"]
    assert [d["type"] for d in data] == names
    assert [d["sequence_number"] for d in data] == list(range(len(data)))
    error, failed = EVENT.validate_python(data[-2]), EVENT.validate_python(data[-1])
    assert (error.code, error.message, error.param) == ("server_error", "Mock upstream error 500", None)
    assert failed.response.status == "failed" and failed.response.error.code == "server_error"


async def test_cut_hang_and_slow(client) -> None:
    got = await events(client, model="cut_after_2")
    assert got[-1].type == "response.output_text.delta" and sum(e.type.endswith(".delta") for e in got) == 2
    with pytest.raises(openai.APITimeoutError):
        await client.with_options(timeout=0.3).responses.create(model="hang", input="Hi")
    started = asyncio.get_running_loop().time()
    assert (await ask(client, model="slow_50")).output_text == "Echo: Hello"
    assert asyncio.get_running_loop().time() - started >= 0.05


async def test_codex_shaped_request(client) -> None:
    shell = {"type": "function", "name": "shell", "description": "Run a command", "strict": False,
             "parameters": {"type": "object", "properties": {"command": {"type": "array", "items": {"type": "string"}}},
                            "required": ["command"], "additionalProperties": False}}  # fmt: skip
    dev = {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "<env>"}]}
    kw: Any = {"model": "codex-reasoning-tools", "instructions": "You are Codex.", "tools": [shell, {"type": "web_search"}],
               "tool_choice": "auto", "parallel_tool_calls": False, "reasoning": {"effort": "medium", "summary": "auto"},
               "store": False, "include": ["reasoning.encrypted_content"], "prompt_cache_key": "conv-1"}  # fmt: skip
    turn = [dev, user("List files")]
    first = await final(client, turn, **kw)
    assert [o.type for o in first.output] == ["reasoning", "function_call"]
    assert (first.parallel_tool_calls, first.store, first.prompt_cache_key) == (False, False, "conv-1")
    assert first.usage and first.usage.input_tokens_details.cached_tokens > 0
    # Codex replays its own assistant messages without id or status (the SDK's types want both)
    said = {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Listing."}]}
    output = {"type": "function_call_output", "call_id": first.output[1].call_id, "output": "a.txt"}
    second = await final(client, [*turn, *replay(first.output), said, output], **kw)
    assert second.output_text == "Tool results: a.txt"


def test_response_script_works_without_a_server() -> None:
    script = ResponseScript({"model": "gpt-fake", "input": "Hi"})
    assert Response.model_validate(script.response()).output_text == "Echo: Hi"
    frames = list(script.frames())
    assert frames[0].startswith(b"event: response.created\ndata: {")
    assert frames[-1].startswith(b"event: response.completed\n")


# -- failure scenarios: failover, key pools, breakers, timeouts ----------------------------------


def now() -> float:
    return asyncio.get_running_loop().time()


async def answer(server: TestServer, model: str, **kw: Any) -> tuple[int, Any, str]:
    headers, url = {"Authorization": f"Bearer {KEY}"}, server.make_url("/v1/responses")
    body = {"model": model, "input": "Hello there", **kw}
    async with aiohttp.ClientSession(headers=headers) as http, http.post(url, json=body) as resp:
        return resp.status, resp.headers, await resp.text()


def wire_events(text: str) -> list[tuple[str, Any]]:
    frames = [frame.split("\n") for frame in text.strip().split("\n\n")]
    return [(name.removeprefix("event: "), json.loads(data.removeprefix("data: "))) for name, data in frames]


@pytest.mark.parametrize(
    ("model", "retry_after"), [("error_429", "1"), ("x-error_429-retry_7", "7"), ("error_503-retry_2", "2")]
)
async def test_retry_after(client, server, model: str, retry_after: str) -> None:
    status, headers, text = await answer(server, model)
    assert status == int(model.split("error_")[1][:3]) and headers["Retry-After"] == retry_after
    if status == 429:
        assert json.loads(text) == {"error": {"message": "Mock upstream error 429", "type": "requests",
                                              "param": None, "code": "rate_limit_exceeded"}}  # fmt: skip
    assert "Retry-After" not in (await answer(server, "error_500"))[1]


async def test_error_401_is_the_body_a_wrong_key_gets(server) -> None:
    status, _, text = await answer(server, "error_401")
    assert status == 401 and json.loads(text) == {"error": {
        "message": f"Incorrect API key provided: sk-ups{'*' * 28}test. You can find your API key at "
                   "https://platform.openai.com/account/api-keys.",
        "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}}  # fmt: skip


@pytest.mark.parametrize("stream", [False, True])
async def test_reset_drops_the_connection_before_any_status(client, server, stream: bool) -> None:
    with pytest.raises(aiohttp.ClientConnectionError):  # ServerDisconnectedError: no status line came
        await answer(server, "x-reset", stream=stream)
    with pytest.raises(openai.APIConnectionError):
        await client.responses.create(model="x-reset", input="Hi", stream=stream)
    assert len(server.app[RECEIVED]) == 2 and (await answer(server, "gpt-fake"))[0] == 200


@pytest.mark.parametrize("stream", [False, True])
async def test_first_byte_delays_the_status_not_the_events(server, stream: bool) -> None:
    headers, url = {"Authorization": f"Bearer {KEY}"}, server.make_url("/v1/responses")
    async with aiohttp.ClientSession(headers=headers) as http:
        started = now()
        async with http.post(url, json={"model": "first_byte_300", "input": "Hi", "stream": stream}) as resp:
            headed = now()
            text = await resp.text()
        done = now()
    assert resp.status == 200 and headed - started >= 0.3 and done - headed < 0.2
    assert wire_events(text)[-1][0] == "response.completed" if stream else json.loads(text)["status"] == "completed"


async def test_preamble_error(client, server) -> None:
    status, _, text = await answer(server, "x-preamble_error", stream=True)
    got = wire_events(text)
    assert status == 200
    assert [name for name, _ in got] == ["response.created", "response.in_progress", "error", "response.failed"]
    assert [data["type"] for _, data in got] == [name for name, _ in got]
    assert [data["sequence_number"] for _, data in got] == [0, 1, 2, 3]
    error, failed = EVENT.validate_python(got[2][1]), EVENT.validate_python(got[3][1])
    assert (error.code, error.message, error.param) == ("server_error", "Mock upstream error 500", None)
    assert failed.response.status == "failed" and failed.response.output == []
    assert failed.response.id == got[0][1]["response"]["id"]
    seen = []
    stream = await client.responses.create(model="x-preamble_error", input="Hello", stream=True)
    with pytest.raises(openai.APIError, match="Mock upstream error 500"):
        async for event in stream:
            seen.append(event.type)
    assert seen == ["response.created", "response.in_progress"]


async def test_stall_after_sends_n_deltas_then_nothing(server) -> None:
    headers, url = {"Authorization": f"Bearer {KEY}"}, server.make_url("/v1/responses")
    body = {"model": "x-stall_after_1", "input": "Hello there", "stream": True}
    async with aiohttp.ClientSession(headers=headers) as http, http.post(url, json=body) as resp:
        frames = [await resp.content.readuntil(b"\n\n") for _ in range(5)]
        with pytest.raises(TimeoutError):  # then nothing, the connection open
            await asyncio.wait_for(resp.content.readany(), 0.3)
        assert not resp.content.at_eof()
    got = wire_events(b"".join(frames).decode())
    assert [name for name, _ in got] == ["response.created", "response.in_progress", "response.output_item.added",
                                         "response.content_part.added", "response.output_text.delta"]  # fmt: skip
    assert got[-1][1]["delta"] == "Echo:" and got[-1][1]["sequence_number"] == 4
    assert await asyncio.wait_for(server.app[DISCONNECTS].get(), 5) == "x-stall_after_1"


async def test_fail_first(client, server) -> None:
    for _ in range(2):
        with pytest.raises(openai.InternalServerError, match="Mock upstream error 500") as caught:
            await ask(client, model="x-fail_first_2")
        assert caught.value.body["type"] == "server_error"
    assert (await ask(client, model="x-fail_first_2")).output_text == "Echo: Hello"
    assert [(await answer(server, "x-fail_first_1-y", stream=True))[0] for _ in range(2)] == [500, 200]


@pytest.mark.parametrize("model", ["gpt-5.1-codex", "gpt-5-pro"])
async def test_responses_only_models_are_served(client, model: str) -> None:
    assert (await ask(client, model=model)).output_text == "Echo: Hello"
