"""A provider plugin installed into the venv is found with no core change; a broken one is
reported at start and the gateway serves everything else.

The two throw-away packages are written here, pip-installed into the running venv, and
uninstalled afterwards; the gateway runs as a separate process so entry points are read
fresh, as they would be on a real install.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import anthropic
import openai
import pytest

from tests.conftest import free_port
from tests.e2e.test_cli import cli, wait_ready

ECHO_MODULE = '''
"""A provider written outside the gateway's source tree."""
import orjson
from izzi_proxy.providers import UpstreamReply


class ShoutProvider:
    kind = "shout"
    wire_formats = frozenset({"openai_chat"})

    @classmethod
    def from_config(cls, upstream, session):
        return cls()

    async def send(self, call):
        text = call.body["messages"][-1]["content"].upper()
        answer = {
            "id": "chatcmpl-shout", "object": "chat.completion", "created": 0, "model": call.body["model"],
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
        return UpstreamReply(200, {}, orjson.dumps(answer))

    async def aclose(self):
        pass
'''

WIRE_MODULE = '''
"""A provider whose upstream speaks a format of its own, which the plugin brings."""
import orjson
from izzi_proxy import canonical as c
from izzi_proxy.providers import UpstreamReply


class LinesWire:
    name = "plain_lines"

    def from_canonical(self, req, target):
        text = " ".join(p.text for p in req.messages[-1].parts if isinstance(p, c.Text))
        return {"say": text, "to": target.model}

    def parse_response(self, body, upstream):
        data = orjson.loads(body)
        usage = c.Usage(input_tokens=data["in"], output_tokens=data["out"])
        return c.Response("pl-1", data["to"], [c.Text(data["said"])], "end_turn", usage)

    def stream_parser(self, upstream):
        return LinesParser()


class LinesParser:
    def __init__(self):
        self.usage, self.usage_final, self.done, self.started = None, False, False, False

    def feed(self, event):
        data, out = orjson.loads(event.data), []
        if not self.started:
            self.started = True
            out += [c.Start("pl-1", "lines"), c.BlockStart(0, c.Text(""))]
        if "word" in data:
            out.append(c.Delta(0, "text", data["word"]))
        if data.get("end"):
            self.usage, self.usage_final, self.done = c.Usage(input_tokens=data["in"], output_tokens=data["out"]), True, True
            out += [c.BlockStop(0), c.Finish("end_turn"), c.UsageUpdate(self.usage), c.End()]
        return out


class LinesProvider:
    kind = "lines"
    wire_formats = frozenset({"plain_lines"})
    wire_codecs = (LinesWire(),)

    @classmethod
    def from_config(cls, upstream, session):
        return cls()

    async def send(self, call):
        said = call.body["say"][::-1]  # reversed: the test knows who answered
        if not call.stream:
            return UpstreamReply(200, {}, orjson.dumps({"said": said, "to": call.body["to"], "in": 3, "out": 2}))
        words = said.split(" ")
        frames = [b"data: " + orjson.dumps({"word": w + (" " if i < len(words) - 1 else "")}) + b"\\n\\n"
                  for i, w in enumerate(words)]
        frames.append(b"data: " + orjson.dumps({"end": True, "in": 3, "out": 2}) + b"\\n\\n")

        async def rest():
            for frame in frames[1:]:
                yield frame

        return UpstreamReply(200, {}, frames[0], rest())

    async def aclose(self):
        pass
'''

BROKEN_MODULE = 'raise ImportError("this plugin needs a library that is not installed")\n'


def write_package(root: Path, dist: str, module: str, kind: str, cls: str, source: str) -> Path:
    root.mkdir()
    (root / "pyproject.toml").write_text(
        textwrap.dedent(f"""
        [build-system]
        requires = ["setuptools>=68"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "{dist}"
        version = "0.0.1"

        [project.entry-points."izzi_proxy.providers"]
        {kind} = "{module}:{cls}"

        [tool.setuptools]
        py-modules = ["{module}"]
        """)
    )
    (root / f"{module}.py").write_text(source)
    return root


def pip(*args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args],
        check=True, capture_output=True, timeout=180,
    )  # fmt: skip


@pytest.fixture
def installed_plugins(tmp_path: Path):
    shout = write_package(
        tmp_path / "shout", "izzi-test-shout", "izzi_test_shout", "shout", "ShoutProvider", ECHO_MODULE
    )
    broken = write_package(
        tmp_path / "broken", "izzi-test-broken", "izzi_test_broken", "broken", "Provider", BROKEN_MODULE
    )
    lines = write_package(
        tmp_path / "lines", "izzi-test-lines", "izzi_test_lines", "lines", "LinesProvider", WIRE_MODULE
    )
    pip("install", "--no-deps", "--no-build-isolation", "--no-index", str(shout), str(broken), str(lines))
    try:
        yield
    finally:
        pip("uninstall", "-y", "izzi-test-shout", "izzi-test-broken", "izzi-test-lines")


@pytest.mark.timeout(240)
async def test_installed_plugin_is_discovered_and_a_broken_one_is_isolated(tmp_path: Path, installed_plugins) -> None:
    import asyncio

    (tmp_path / "models.toml").write_text(
        "".join(
            f'[models."{m}"]\nname = "{m}"\ntier = "maintained"\ninput = 1\noutput = 1\nroutes = ["{u}:x"]\n'
            for m, u in [("loud", "shouter"), ("fragile", "fragile"), ("echo", "mock"), ("backwards", "lines")]
        )
    )
    config = tmp_path / "izzi.toml"
    config.write_text(
        f'[storage]\ndatabase_url = "sqlite:///{tmp_path}/db.sqlite3"\n'
        '[upstreams.shouter]\nkind = "shout"\n[upstreams.fragile]\nkind = "broken"\n'
        '[upstreams.mock]\nkind = "mock"\n[upstreams.lines]\nkind = "lines"\n'
    )
    secret = cli("keys", "create", "--name", "t", "--config", str(config)).stdout.strip()
    assert cli("credits", "add", "default", "10", "--config", str(config)).returncode == 0
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "izzi_proxy", "serve", "--config", str(config), "--port", str(port),
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        await wait_ready(f"http://127.0.0.1:{port}", process)
        async with openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=secret, max_retries=0) as client:
            loud = await client.chat.completions.create(
                model="loud", messages=[{"role": "user", "content": "hi there"}]
            )
            assert loud.choices[0].message.content == "HI THERE"
            echo = await client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi"}])
            assert echo.choices[0].message.content == "Echo: hi"
            with pytest.raises(openai.InternalServerError) as caught:
                await client.chat.completions.create(model="fragile", messages=[{"role": "user", "content": "hi"}])
            assert "provider plugin 'broken' failed to load" in caught.value.message
            await speaks_its_own_wire_format(client, f"http://127.0.0.1:{port}", secret)
    finally:
        process.terminate()
        await process.wait()
    log = (await process.stderr.read()).decode()
    assert "provider plugin 'broken' failed to load" in log
    assert "needs a library that is not installed" in log


async def speaks_its_own_wire_format(client: openai.AsyncOpenAI, base: str, secret: str) -> None:
    """The ``lines`` plugin's wire format, unknown to the core, serves every client format."""
    hello = [{"role": "user", "content": "hello wide world"}]
    plain = await client.chat.completions.create(model="backwards", messages=hello)
    assert plain.choices[0].message.content == "dlrow ediw olleh" and plain.model == "backwards"
    assert plain.usage is not None and plain.usage.completion_tokens == 2
    chunks = await client.chat.completions.create(model="backwards", messages=hello, stream=True)
    assert "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices]) == "dlrow ediw olleh"
    assert (await client.responses.create(model="backwards", input="abc def")).output_text == "fed cba"
    claude = anthropic.AsyncAnthropic(base_url=base, api_key=secret, max_retries=0)
    async with claude, claude.messages.stream(model="backwards", max_tokens=50, messages=hello) as stream:
        assert "".join([t async for t in stream.text_stream]) == "dlrow ediw olleh"
        final = await stream.get_final_message()
    assert final.usage.output_tokens == 2 and final.stop_reason == "end_turn"
