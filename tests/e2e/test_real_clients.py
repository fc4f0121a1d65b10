"""The real Claude Code, Codex and Gemini CLIs against the gateway on the project's fake upstreams.

Versions are pinned in ``tests/clients/package.json`` and installed by ``scripts/clients``
(``scripts/test`` runs it). Each run gets its own HOME and works offline against the
gateway's local URL. The fakes hold to the real APIs' rules (Anthropic's signed thinking,
its thinking-first rule for tool turns, the system role only under its beta; OpenAI's
tool-call pairing; Gemini 3's thought signatures), and a prompt that says ``call <tool> <JSON>`` makes them ask for that
one tool, so each run makes a real tool round trip: the fake asks for a tool, the CLI runs
it on a file here and sends the result back, and the final answer quotes what it read.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import sys
from pathlib import Path

import pytest

from tests.conftest import Gateway

CLIENTS = Path(__file__).resolve().parents[1] / "clients" / "node_modules" / ".bin"
SECRET = "izzi-magic-4217"  # what the tool reads: only a real tool run can put it in the answer


def cli(name: str) -> str:
    path = CLIENTS / name
    if not path.exists():
        message = f"{path} is missing: run scripts/clients (it installs tests/clients/package.json)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return str(path)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    (work / "hello.txt").write_text(f"The secret word is {SECRET}.\n")
    return work


async def run(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 90) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *args, cwd=cwd, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")


def base_env(home: Path) -> dict[str, str]:
    home.mkdir(exist_ok=True)
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LANG": "C.UTF-8", "TERM": "dumb"}


# -- Claude Code -------------------------------------------------------------------------------


async def claude_code(gateway: Gateway, workdir: Path, model: str | None) -> dict:
    env = {
        **base_env(workdir.parent / "home"),
        "ANTHROPIC_BASE_URL": str(gateway.server.make_url("")).rstrip("/"),
        "ANTHROPIC_API_KEY": gateway.key,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
    }
    prompt = f"Please call Read {json.dumps({'file_path': str(workdir / 'hello.txt')})} and tell me the secret word."
    args = [cli("claude"), "-p", prompt, "--output-format", "json", *(["--model", model] if model else [])]
    code, out, err = await run(args, env, workdir)
    assert code == 0, f"claude exited {code}\nstdout: {out[-3000:]}\nstderr: {err[-3000:]}"
    result = json.loads(out)
    assert result["is_error"] is False, result
    return result


@pytest.mark.timeout(180)
@pytest.mark.parametrize(
    ("model", "upstream_model"),
    [
        ("claude-sonnet-4.5", "claude-sonnet-4-5-tools-linger"),  # a catalog id Claude Code does not know
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5-tools-linger"),  # a dated id
        (None, "claude-sonnet-4-5-tools-linger"),  # no --model: Claude Code's default, by family
    ],
    ids=["catalog-id", "dated-id", "default-model"],
)
async def test_claude_code_on_claude(gateway: Gateway, workdir: Path, model: str | None, upstream_model: str) -> None:
    result = await claude_code(gateway, workdir, model)
    assert SECRET in result["result"], result
    sent = [r for r in gateway.anthropic_received if r.path.startswith("/v1/messages?") or r.path == "/v1/messages"]
    turns = [r for r in sent if r.body.get("model") == upstream_model and r.body.get("tools")]
    assert len(turns) >= 2, [r.body.get("model") for r in sent]
    last = turns[-1].body["messages"]
    # the tool turn went back with its signed thinking first (the fake checks the signature)
    assistant = next(m for m in reversed(last) if m["role"] == "assistant")
    assert assistant["content"][0]["type"] == "thinking", assistant["content"][0]
    assert any(b.get("type") == "tool_result" for b in last[-1]["content"])
    records = [r for r in await gateway.records() if r.upstream_model == upstream_model]
    assert len(records) == len(turns) and {(r.status, r.outcome) for r in records} == {(200, "ok")}
    asked = {r.requested_model for r in records}
    assert asked == {model} if model else (len(asked) == 1 and asked.pop().startswith("claude-opus-")), asked


@pytest.mark.timeout(180)
async def test_claude_code_on_a_gpt_model(gateway: Gateway, workdir: Path) -> None:
    result = await claude_code(gateway, workdir, "gpt-4.1-mini")
    assert SECRET in result["result"], result
    turns = [r.body for r in gateway.received if r.body.get("model") == "gpt-4.1-mini-tools-linger"]
    assert len(turns) >= 2
    roles = [m["role"] for m in turns[-1]["messages"]]
    assert roles[0] == "system" and "system" in roles[1:] and roles[-1] == "tool"  # mid-conversation system
    assert b"x-anthropic-billing-header" not in json.dumps(turns[-1]).encode()
    first, second = (json.dumps(t["messages"])[:-1] for t in turns[:2])
    assert json.dumps(turns[1]["messages"]).startswith(first) and len(second) > len(first)  # a cacheable prefix


@pytest.mark.timeout(180)
async def test_claude_code_on_a_codex_model(gateway: Gateway, workdir: Path) -> None:
    """A model OpenAI serves only on its Responses API: Claude Code's Messages, translated."""
    result = await claude_code(gateway, workdir, "gpt-5.1-codex")
    assert SECRET in result["result"], result
    turns = [r for r in gateway.received if r.body.get("model") == "gpt-5.1-codex-tools-linger"]
    assert len(turns) >= 2 and {r.path for r in turns} == {"/v1/responses"}
    last = turns[-1].body
    assert last["stream"] is True and last["store"] is False and last["instructions"]
    kinds = [item["type"] for item in last["input"]]
    assert "function_call" in kinds and kinds[-1] == "function_call_output"
    records = [r for r in await gateway.records() if r.upstream_model == "gpt-5.1-codex-tools-linger"]
    assert len(records) == len(turns) and {(r.status, r.outcome) for r in records} == {(200, "ok")}


# -- Codex -------------------------------------------------------------------------------------


async def codex(gateway: Gateway, workdir: Path, model: str, provider_extra: str = "") -> str:
    home = workdir.parent / "home"
    env = {**base_env(home), "CODEX_HOME": str(home / ".codex"), "IZZI_API_KEY": gateway.key}
    (home / ".codex").mkdir(parents=True, exist_ok=True)
    (home / ".codex" / "config.toml").write_text(
        f'model = "{model}"\nmodel_provider = "izzi"\n\n[model_providers.izzi]\nname = "Izzi Gateway"\n'
        f'base_url = "{gateway.url}"\nenv_key = "IZZI_API_KEY"\nwire_api = "responses"\n{provider_extra}'
    )
    last = workdir.parent / "last-message.txt"
    prompt = f"Please call exec_command {json.dumps({'cmd': 'cat hello.txt'})} and tell me the secret word."
    args = [cli("codex"), "exec", "--skip-git-repo-check", "--dangerously-bypass-approvals-and-sandbox",
            "--color", "never", "-o", str(last), prompt]  # fmt: skip
    code, out, err = await run(args, env, workdir)
    assert code == 0, f"codex exited {code}\nstdout: {out[-3000:]}\nstderr: {err[-3000:]}"
    return last.read_text()


@pytest.mark.timeout(180)
@pytest.mark.parametrize(
    ("model", "received"),
    [("gpt-5.1-codex", "received"), ("claude-sonnet-4.5", "anthropic_received")],
    ids=["gpt-passthrough", "claude-translated"],
)
async def test_codex_with_a_function_call(gateway: Gateway, workdir: Path, model: str, received: str) -> None:
    answer = await codex(gateway, workdir, model)
    assert SECRET in answer, answer
    bodies = [r.body for r in getattr(gateway, received) if r.method == "POST"]
    assert len(bodies) >= 2
    records = await gateway.records()
    assert records and {(r.status, r.outcome) for r in records} == {(200, "ok")}, [
        (r.status, r.outcome) for r in records
    ]


@pytest.mark.timeout(180)
async def test_codex_told_it_may_use_websockets_falls_back_to_http_at_once(
    gateway: Gateway, workdir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="izzi.access")
    answer = await codex(gateway, workdir, "gpt-5.1-codex", "supports_websockets = true\n")
    assert SECRET in answer
    handshakes = [r for r in caplog.records if " GET /v1/responses 426 " in r.getMessage()]
    assert 1 <= len(handshakes) <= 2, [r.getMessage() for r in caplog.records]  # not the 7 retries a 405 costs


def test_the_pinned_versions_are_installed() -> None:
    cli("claude")
    pinned = json.loads((CLIENTS.parents[1] / "package.json").read_text())["dependencies"]
    for package, version in pinned.items():
        manifest = CLIENTS.parent / package / "package.json"
        assert json.loads(manifest.read_text())["version"] == version, package


# -- Gemini CLI --------------------------------------------------------------------------------

# The Gemini CLI settles on an auth method before it reads the environment's key: without
# ``selectedType`` it refuses to start headless (exit 41), as the README's setup says.
GEMINI_SETTINGS = {
    "security": {"auth": {"selectedType": "gemini-api-key"}},
    "general": {"disableAutoUpdate": True, "disableUpdateNag": True},
    "privacy": {"usageStatisticsEnabled": False},
    "telemetry": {"enabled": False},
}


async def gemini_cli(gateway: Gateway, workdir: Path, model: str | None) -> dict:
    home = workdir.parent / "home"
    env = {
        **base_env(home),
        "GOOGLE_GEMINI_BASE_URL": str(gateway.server.make_url("")).rstrip("/"),
        "GEMINI_API_KEY": gateway.key,
        "GEMINI_CLI_TRUST_WORKSPACE": "true",  # a fresh folder is untrusted, and yolo is refused there
    }
    (home / ".gemini").mkdir(parents=True, exist_ok=True)
    (home / ".gemini" / "settings.json").write_text(json.dumps(GEMINI_SETTINGS))
    prompt = (
        f"Please call read_file {json.dumps({'file_path': str(workdir / 'hello.txt')})} and tell me the secret word."
    )
    args = [cli("gemini"), "-p", prompt, "--output-format", "json", "--approval-mode", "yolo",
            *(["--model", model] if model else [])]  # fmt: skip
    code, out, err = await run(args, env, workdir, timeout=120)
    assert code == 0, f"gemini exited {code}\nstdout: {out[-3000:]}\nstderr: {err[-3000:]}"
    return json.loads(out[out.index("{") :])


@pytest.mark.timeout(180)
@pytest.mark.parametrize(
    ("model", "received", "upstream_model"),
    [
        ("claude-sonnet-4.5", "anthropic_received", "claude-sonnet-4-5-tools-linger"),
        ("gpt-4.1-mini", "received", "gpt-4.1-mini-tools-linger"),
    ],
    ids=["claude-translated", "gpt-translated"],
)
async def test_gemini_cli_runs_a_tool(
    gateway: Gateway, workdir: Path, model: str, received: str, upstream_model: str
) -> None:
    result = await gemini_cli(gateway, workdir, model)
    assert SECRET in result["response"], result
    turns = [r.body for r in getattr(gateway, received) if r.body.get("model") == upstream_model]
    assert len(turns) >= 2 and turns[-1].get("stream") is True
    assert SECRET in json.dumps(turns[-1])  # the tool's result went back, paired with its call
    records = [r for r in await gateway.records() if r.upstream_model == upstream_model]
    assert len(records) == len(turns) and {(r.status, r.outcome, r.requested_model) for r in records} == {
        (200, "ok", model)
    }


@pytest.mark.timeout(180)
async def test_gemini_cli_default_models_pass_through_to_gemini(gateway: Gateway, workdir: Path) -> None:
    """No --model: the CLI's own names (its router's flash-lite, its pro) resolve by family to
    a Gemini-served model, spoken to natively; the fake checks every thought signature."""
    result = await gemini_cli(gateway, workdir, None)
    assert SECRET in result["response"], result
    streams = [
        r for r in gateway.gemini_received if r.path == "/v1beta/models/gemini-3-tools:streamGenerateContent?alt=sse"
    ]
    assert len(streams) >= 2
    model_turn = next(c for c in streams[-1].body["contents"] if c.get("role") == "model")
    call = next(p for p in model_turn["parts"] if "functionCall" in p)
    assert call["thoughtSignature"] and call["functionCall"]["id"]  # as the fake gave it; the id the CLI's
    answered = [
        p["functionResponse"] for c in streams[-1].body["contents"] for p in c["parts"] if "functionResponse" in p
    ]
    assert answered[-1]["id"] == call["functionCall"]["id"]
    records = await gateway.records()
    asked = {r.requested_model for r in records}
    assert (
        {r.model for r in records} == {"gemini-tools"}
        and len(asked) >= 1
        and all(a.startswith("gemini-") for a in asked)
    )
    assert {(r.status, r.outcome) for r in records} == {(200, "ok")}


# -- configured by `izzi-proxy configure` alone ----------------------------------------------------


async def configured_home(gateway: Gateway, workdir: Path, *extra: str) -> dict[str, str]:
    """A home whose tools were set up by the configure command only (with the Gemini CLI's
    own quiet settings already there, as a user's would be); the environment it leaves is a
    plain one: PATH, HOME, locale."""
    home = workdir.parent / "home"
    (home / ".gemini").mkdir(parents=True, exist_ok=True)
    quiet = {k: v for k, v in GEMINI_SETTINGS.items() if k != "security"}
    (home / ".gemini" / "settings.json").write_text(json.dumps(quiet))
    for folder in (".claude", ".codex"):
        (home / folder).mkdir(exist_ok=True)
    env = base_env(home)
    args = [sys.executable, "-m", "izzi_proxy", "configure", "--url", str(gateway.server.make_url("")).rstrip("/"),
            "--key", gateway.key, "--yes", "--only", "Claude Code,Codex,Gemini CLI", *extra]  # fmt: skip
    code, out, err = await run(args, {**env, "PYTHONPATH": os.environ.get("PYTHONPATH", "")}, workdir)
    assert code == 0, out + err
    return env


@pytest.mark.timeout(240)
async def test_the_real_clients_answer_once_configure_has_run(gateway: Gateway, workdir: Path) -> None:
    env = await configured_home(gateway, workdir)
    read = f"Please call Read {json.dumps({'file_path': str(workdir / 'hello.txt')})} and tell me the secret word."
    code, out, err = await run([cli("claude"), "-p", read, "--output-format", "json"],
                               {**env, "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_AUTOUPDATER": "1"}, workdir)  # fmt: skip
    assert code == 0 and SECRET in json.loads(out)["result"], out[-2000:] + err[-2000:]

    last = workdir.parent / "last-message.txt"
    prompt = f"Please call exec_command {json.dumps({'cmd': 'cat hello.txt'})} and tell me the secret word."
    codex = f"{cli('codex')} exec --skip-git-repo-check --dangerously-bypass-approvals-and-sandbox --color never -o {last} {shlex.quote(prompt)}"
    code, out, err = await run(
        ["bash", "-c", f". ~/.bashrc && {codex}"], env, workdir
    )  # the key from the profile block
    assert code == 0 and SECRET in last.read_text(), out[-2000:] + err[-2000:]

    read = f"Please call read_file {json.dumps({'file_path': str(workdir / 'hello.txt')})} and tell me the secret word."
    code, out, err = await run([cli("gemini"), "-p", read, "--output-format", "json", "--approval-mode", "yolo", "--skip-trust"],
                               env, workdir, timeout=120)  # fmt: skip
    assert code == 0 and SECRET in json.loads(out[out.index("{") :])["response"], out[-2000:] + err[-2000:]

    records = await gateway.records()
    assert {r.model for r in records} >= {"claude-sonnet-4.5", "gpt-5.1-codex", "gemini-tools"}
    assert {(r.status, r.outcome) for r in records} == {(200, "ok")}
