"""Requests shaped like Claude Code's (2.1.x), through /v1/messages: mid-conversation system
messages, the per-request billing line, thinking kept across a tool turn, tool-call ids in
each client's convention, and a byte-stable prefix from turn to turn when translated.
The real CLI runs in ``test_real_clients.py``; these pin down each rule on its own."""

from __future__ import annotations

from typing import Any

import aiohttp
import openai
import orjson
import pytest

from tests.conftest import Gateway
from tests.e2e.shapes import assert_anthropic_error

BETAS = (
    "claude-code-20250219,interleaved-thinking-2025-05-14,context-management-2025-06-27,"
    "prompt-caching-scope-2026-01-05,mid-conversation-system-2026-04-07,effort-2025-11-24"
)
READ = {
    "name": "Read",
    "description": "Reads a file from the local filesystem.",
    "input_schema": {
        "type": "object",
        "properties": {"file_path": {"type": "string"}, "limit": {"type": "integer"}},
        "required": ["file_path"],
    },
}
BASH = {
    "name": "Bash",
    "description": "Executes a bash command.",
    "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]},
}


def system(cch: str) -> list[dict[str, Any]]:
    return [
        {"type": "text", "text": f"x-anthropic-billing-header: cc_version=2.1.197.1c0; cc_entrypoint=cli; cch={cch};"},
        {"type": "text", "text": "You are a Claude agent, built on Anthropic's Claude Agent SDK.",
         "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "You are an interactive agent that helps users with software engineering tasks."},
    ]  # fmt: skip


FIRST_TURN = [
    {"role": "user", "content": [
        {"type": "text", "text": "<system-reminder>\nToday's date is 2026-12-01.\n</system-reminder>\n\n"},
        {"type": "text", "text": "What is in hello.txt?", "cache_control": {"type": "ephemeral"}},
    ]},
    {"role": "system", "content": "Available agent types for the Agent tool:\n- Explore: read-only search agent"},
]  # fmt: skip


def claude_code_body(model: str, messages: list[dict[str, Any]], cch: str = "a1b2c", **extra: Any) -> dict[str, Any]:
    return {
        "model": model,
        "messages": messages,
        "system": system(cch),
        "tools": [READ, BASH],
        "metadata": {"user_id": '{"device_id":"3d70","account_uuid":"","session_id":"f44f4782"}'},
        "max_tokens": 32000,
        "thinking": {"type": "adaptive"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "output_config": {"effort": "high"},
        "stream": True,
        **extra,
    }


async def post(gateway: Gateway, body: dict[str, Any], betas: str = BETAS) -> aiohttp.ClientResponse:
    headers = {"x-api-key": gateway.key, "anthropic-version": "2023-06-01", "anthropic-beta": betas}
    async with aiohttp.ClientSession() as session:
        resp = await session.post(gateway.server.make_url("/v1/messages?beta=true"), json=body, headers=headers)
        await resp.read()
        return resp


def message_of(frames: bytes) -> dict[str, Any]:
    """The assistant message a client assembles from an Anthropic stream."""
    message: dict[str, Any] = {}
    for line in frames.splitlines():
        if not line.startswith(b"data: "):
            continue
        event = orjson.loads(line[6:])
        if event["type"] == "message_start":
            message = {**event["message"], "content": []}
        elif event["type"] == "content_block_start":
            message["content"].append(event["content_block"])
        elif event["type"] == "content_block_delta":
            block, delta = message["content"][event["index"]], event["delta"]
            kind = delta["type"]
            if kind == "input_json_delta":
                block["_json"] = block.get("_json", "") + delta["partial_json"]
            elif kind in ("text_delta", "thinking_delta", "signature_delta"):
                field = {"text_delta": "text", "thinking_delta": "thinking", "signature_delta": "signature"}[kind]
                block[field] = block.get(field, "") + delta[field]
        elif event["type"] == "message_delta":
            message["stop_reason"] = event["delta"]["stop_reason"]
    for block in message["content"]:
        if "_json" in block:
            block["input"] = orjson.loads(block.pop("_json"))
    return message


def tool_results(answer: dict[str, Any], text: str) -> dict[str, Any]:
    uses = [b for b in answer["content"] if b["type"] == "tool_use"]
    return {"role": "user", "content": [{"type": "tool_result", "tool_use_id": u["id"], "content": text} for u in uses]}


def as_claude_code_keeps_it(answer: dict[str, Any], asked: str) -> dict[str, Any]:
    """Claude Code keeps the thinking of a turn only if the answer names the model it asked for."""
    blocks = answer["content"]
    if answer["model"] != asked:
        blocks = [b for b in blocks if b["type"] not in ("thinking", "redacted_thinking")]
    return {"role": "assistant", "content": blocks}


# -- mid-conversation system messages ---------------------------------------------------------


async def test_mid_conversation_system_passes_through_to_anthropic(gateway: Gateway) -> None:
    body = claude_code_body("claude-sonnet-4-5-20250929", FIRST_TURN)
    resp = await post(gateway, body)
    assert resp.status == 200, await resp.text()
    sent = gateway.anthropic_received[-1]
    assert sent.body == {**body, "model": "claude-sonnet-4-5-tools-linger"}  # untouched: billing line and all
    assert sent.headers["anthropic-beta"] == BETAS


async def test_without_its_beta_anthropic_refuses_a_system_role(gateway: Gateway) -> None:
    resp = await post(gateway, claude_code_body("claude-sonnet-4.5", FIRST_TURN), betas="claude-code-20250219")
    error = await assert_anthropic_error(resp, 400, "invalid_request_error")
    assert "messages.1.role" in error["message"]


@pytest.mark.parametrize("model", ["gpt-4o", "gpt-reasoning"])
async def test_mid_conversation_system_translated_in_place(gateway: Gateway, model: str) -> None:
    resp = await post(gateway, claude_code_body(model, [*FIRST_TURN, {"role": "user", "content": "And then?"}]))
    assert resp.status == 200, await resp.text()
    sent = gateway.received[-1].body["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "system", "user"]
    assert sent[0]["content"] == (  # the billing line is not sent on
        "You are a Claude agent, built on Anthropic's Claude Agent SDK.\n\n"
        "You are an interactive agent that helps users with software engineering tasks."
    )
    assert sent[2] == {"role": "system", "content": FIRST_TURN[1]["content"]}


async def test_openai_clients_keep_later_system_messages_in_place(gateway: Gateway, client: openai.AsyncOpenAI) -> None:
    messages: Any = [{"role": "system", "content": "Be brief"}, {"role": "user", "content": "Hi"},
                     {"role": "assistant", "content": "Hello"}, {"role": "system", "content": "Now in French"},
                     {"role": "user", "content": "Again"}]  # fmt: skip
    await client.responses.create(model="gpt-chat-only", input=messages)  # Responses -> chat upstream
    sent = gateway.received[-1].body["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "system", "user"]
    await client.chat.completions.create(model="claude", messages=messages)  # toward Claude: folded, in order
    assert gateway.anthropic_received[-1].body["system"] == "Be brief\n\nNow in French"


# -- thinking across a tool turn, on a catalog id Claude Code does not know ----------------------


@pytest.mark.parametrize("asked", ["claude-sonnet-4.5", "claude-sonnet-4-5-20250929", "claude-opus-4-8"])
async def test_thinking_survives_a_tool_turn_under_any_name(gateway: Gateway, asked: str) -> None:
    first = await post(gateway, claude_code_body(asked, FIRST_TURN))
    answer = message_of(await first.read())
    assert answer["model"] == asked and answer["stop_reason"] == "tool_use"
    assert [b["type"] for b in answer["content"]][:2] == ["thinking", "tool_use"]
    assert answer["content"][1]["id"].startswith("toolu_")
    second = await post(gateway, claude_code_body(asked, [*FIRST_TURN, as_claude_code_keeps_it(answer, asked),
                                                         tool_results(answer, "hello from the file")]))  # fmt: skip
    assert second.status == 200, await second.text()
    assert message_of(await second.read())["content"][-1]["text"].startswith("Tool results: hello from the file")


# -- tool-call ids in the client's convention ---------------------------------------------------


async def test_openai_clients_get_call_ids_from_claude(gateway: Gateway, client: openai.AsyncOpenAI) -> None:
    tools = [{"type": "function", "function": {"name": "Read", "parameters": READ["input_schema"]}}]
    messages: list[Any] = [{"role": "user", "content": "Read it"}]
    first = await client.chat.completions.create(model="claude-tools", messages=messages, tools=tools)
    calls = first.choices[0].message.tool_calls
    assert calls and all(call.id.startswith("call_") for call in calls)
    messages += [first.choices[0].message.model_dump(exclude_none=True),
                 *({"role": "tool", "tool_call_id": call.id, "content": "31C"} for call in calls)]  # fmt: skip
    await client.chat.completions.create(model="claude-tools", messages=messages, tools=tools)
    sent = gateway.anthropic_received[-1].body["messages"]
    upstream_ids = [b["id"] for b in gateway.anthropic_received[-1].body["messages"][1]["content"]]
    assert all(i.startswith("toolu_") for i in upstream_ids)  # Claude gets its own ids back
    assert [b["tool_use_id"] for b in sent[2]["content"]] == upstream_ids


async def test_responses_clients_get_call_ids_from_claude(gateway: Gateway, client: openai.AsyncOpenAI) -> None:
    tools = [{"type": "function", "name": "Read", "parameters": READ["input_schema"]}]
    first = await client.responses.create(model="claude-tools", input="Read it", tools=tools, store=False)
    calls = [item for item in first.output if item.type == "function_call"]
    assert calls and all(call.call_id.startswith("call_") for call in calls)
    items = [{"role": "user", "content": "Read it"}, *(c.model_dump(exclude_none=True) for c in calls),
             *({"type": "function_call_output", "call_id": c.call_id, "output": "31C"} for c in calls)]  # fmt: skip
    await client.responses.create(model="claude-tools", input=items, tools=tools, store=False)
    sent = gateway.anthropic_received[-1].body["messages"]
    assert [b["id"] for b in sent[1]["content"]] == [b["tool_use_id"] for b in sent[2]["content"]]
    assert all(b["id"].startswith("toolu_") for b in sent[1]["content"])


# -- the prefix caches of other upstreams ------------------------------------------------------


async def test_two_translated_turns_share_an_identical_prefix(gateway: Gateway) -> None:
    """Claude Code on a GPT model, two turns in a row: what OpenAI receives for the second
    starts with the very bytes it received for the first, so its prefix cache hits (the
    billing line, whose cch changes on every request, is not sent)."""
    first = await post(gateway, claude_code_body("tools", FIRST_TURN, cch="00a1f"))
    answer = message_of(await first.read())
    assert [b["type"] for b in answer["content"]] == ["tool_use", "tool_use"]
    sent_first = gateway.received[-1].body
    later = [*FIRST_TURN, as_claude_code_keeps_it(answer, "tools"), tool_results(answer, "hello")]
    second = await post(gateway, claude_code_body("tools", later, cch="ff93b"))
    assert second.status == 200
    sent_second = gateway.received[-1].body
    assert sent_second["tools"] == sent_first["tools"]
    first_bytes, second_bytes = orjson.dumps(sent_first["messages"]), orjson.dumps(sent_second["messages"])
    assert second_bytes.startswith(first_bytes[:-1]) and len(second_bytes) > len(first_bytes)
    assert b"x-anthropic-billing-header" not in orjson.dumps(sent_second)
    # the assistant turn carries the upstream's own call ids again
    calls = sent_second["messages"][len(sent_first["messages"])]["tool_calls"]
    assert [call["id"] for call in calls] == ["call_" + b["id"].removeprefix("toolu_") for b in answer["content"]]


async def test_the_billing_line_stays_for_anthropic(gateway: Gateway) -> None:
    body = claude_code_body("claude-sonnet-4.5", FIRST_TURN[:1], stream=False)
    await post(gateway, body)
    assert gateway.anthropic_received[-1].body["system"][0]["text"].startswith("x-anthropic-billing-header:")
