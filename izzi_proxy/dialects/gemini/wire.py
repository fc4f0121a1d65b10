"""Toward a Gemini upstream: a canonical request as a ``GenerateContentRequest``.

The upstream's model goes in the body under ``model``, which the provider moves to the URL.
Function calls that reach Gemini from the canonical form were made by another model (or
their signatures were lost on the way), so the first of each model turn carries Google's
placeholder signature, which Gemini 3 requires; a ``functionResponse`` names its function,
as Gemini requires, from the call it answers. Tool schemas are written as Gemini's
``parameters`` (``schema.to_gemini``). Thinking from other vendors is not sent.
"""

from __future__ import annotations

from typing import Any

from izzi_proxy import canonical as c
from izzi_proxy.dialects.anthropic_messages.request import BUDGET_BY_EFFORT, tool_input
from izzi_proxy.dialects.gemini import schema
from izzi_proxy.dialects.gemini.request import MAX_STOP_SEQUENCES, SKIP_SIGNATURE


def _wire_part(part: c.Part, names: dict[str, str]) -> dict[str, Any] | None:
    if isinstance(part, c.Text):
        return {"text": part.text} if part.text else None
    if isinstance(part, c.Image):
        if part.url is not None:
            return {"fileData": {"mimeType": part.media_type or "image/jpeg", "fileUri": part.url}}
        return {"inlineData": {"mimeType": part.media_type or "image/png", "data": part.data or ""}}
    if isinstance(part, c.Document):
        if part.text is not None:
            return {"text": part.text}
        if part.url is not None:
            return {"fileData": {"mimeType": part.media_type or "application/pdf", "fileUri": part.url}}
        return {"inlineData": {"mimeType": part.media_type or "application/pdf", "data": part.data or ""}}
    if isinstance(part, c.ToolCall):
        names[part.id] = part.name
        return {"functionCall": {"id": part.id, "name": part.name, "args": tool_input(part.arguments)}}
    if isinstance(part, c.ToolResult):
        texts = "\n".join(p.text for p in part.content if isinstance(p, c.Text))
        response = {"error": texts} if part.is_error else {"output": texts}
        result: dict[str, Any] = {
            "id": part.tool_call_id,
            "name": names.get(part.tool_call_id, ""),
            "response": response,
        }
        images = [p for p in part.content if isinstance(p, c.Image) and p.data is not None]
        if images:
            result["parts"] = [
                {"inlineData": {"mimeType": p.media_type or "image/png", "data": p.data}} for p in images
            ]
        return {"functionResponse": result}
    return None  # thinking from another vendor: Gemini could not read it back


def _contents(req: c.Request) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # call id -> function name (a functionResponse must name it)
    for message in req.messages:
        if message.role == "system":
            continue  # folded into systemInstruction
        parts = [p for part in message.parts if (p := _wire_part(part, names)) is not None]
        if not parts:
            continue
        first_call = next((p for p in parts if "functionCall" in p), None)
        if message.role == "assistant" and first_call is not None:
            first_call["thoughtSignature"] = SKIP_SIGNATURE  # Google's placeholder: not this model's calls
        role = "model" if message.role == "assistant" else "user"
        if out and out[-1]["role"] == role:
            out[-1]["parts"] += parts
        else:
            out.append({"role": role, "parts": parts})
    return out


_WIRE_MODES = {"auto": "AUTO", "any": "ANY", "none": "NONE", "tool": "ANY"}


def from_canonical(req: c.Request, target: c.Target) -> dict[str, Any]:
    body: dict[str, Any] = {"model": target.model, "contents": _contents(req)}
    later = [p.text for m in req.messages if m.role == "system" for p in m.parts if isinstance(p, c.Text)]
    if system := [*req.system, *later]:
        body["systemInstruction"] = {"parts": [{"text": "\n\n".join(system)}]}
    if req.tools:
        declarations = []
        for tool in req.tools:
            declared: dict[str, Any] = {"name": tool.name}
            if tool.description:
                declared["description"] = tool.description
            if (parameters := schema.to_gemini(tool.parameters)) is not None:
                declared["parameters"] = parameters
            declarations.append(declared)
        body["tools"] = [{"functionDeclarations": declarations}]
        if req.tool_choice is not None:
            calling: dict[str, Any] = {"mode": _WIRE_MODES[req.tool_choice.mode]}
            if req.tool_choice.mode == "tool" and req.tool_choice.name:
                calling["allowedFunctionNames"] = [req.tool_choice.name]
            body["toolConfig"] = {"functionCallingConfig": calling}
    config: dict[str, Any] = {}
    for name, value in (("temperature", req.temperature), ("topP", req.top_p), ("topK", req.top_k),
                        ("maxOutputTokens", req.max_tokens)):  # fmt: skip
        if value is not None:
            config[name] = value
    if req.stop:
        config["stopSequences"] = req.stop[:MAX_STOP_SEQUENCES]
    if (response_format := req.response_format) is not None:
        config["responseMimeType"] = "application/json"
        found = (response_format.get("json_schema") or {}).get("schema")
        if response_format.get("type") == "json_schema" and isinstance(found, dict):
            config["responseJsonSchema"] = found
    if req.reasoning is not None and target.reasoning:
        budget = req.reasoning.budget_tokens or BUDGET_BY_EFFORT.get(req.reasoning.effort or "", 8192)
        config["thinkingConfig"] = {"thinkingBudget": budget, "includeThoughts": True}
    if config:
        body["generationConfig"] = config
    return body
