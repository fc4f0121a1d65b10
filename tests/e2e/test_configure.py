"""``izzi-proxy configure`` (and the same module served as ``GET /configure.py``) against a
real gateway, each run in a fake home (HOME and XDG in a temp folder, no tool on PATH) with
fake installations of the tools: the exact files written, merging, a second run, dry runs,
undo, checks, and the script run as ``curl … | python3 -`` runs it."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import aiohttp
import pytest

from izzi_proxy.configure import Place
from tests.conftest import Gateway


def fake_home(tmp_path: Path) -> Path:
    """A home where each tool looks installed (its config folder), some with settings of
    the user's own that must survive."""
    home = tmp_path / "home"
    (home / ".claude").mkdir(parents=True)
    (home / ".claude" / "settings.json").write_text(
        json.dumps({"theme": "dark", "env": {"FOO": "1", "ANTHROPIC_API_KEY": "sk-old"}})
    )
    (home / ".codex").mkdir()
    (home / ".codex" / "config.toml").write_text(
        'model = "o3"\napproval_policy = "never"\n\n[profiles.fast]\nmodel = "o4-mini"\n'
    )
    (home / ".gemini").mkdir()
    (home / ".gemini" / "settings.json").write_text(
        json.dumps({"security": {"auth": {"selectedType": "oauth-personal"}}, "ui": {"theme": "GitHub"}})
    )
    (home / ".aider.conf.yml").write_text("dark-mode: true\nmodel: gpt-4\n")
    (home / ".openclaw").mkdir()
    (home / ".config" / "opencode").mkdir(parents=True)
    (home / ".bashrc").write_text("alias ll='ls -l'\n")
    return home


def run(home: Path, *args: str, stdin: str | None = None, script: bool = False) -> subprocess.CompletedProcess[str]:
    env = {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "PATH": "/nonexistent", "LANG": "C.UTF-8",
           "PYTHONPATH": os.environ.get("PYTHONPATH", "")}  # fmt: skip
    command = [sys.executable, "-", *args] if script else [sys.executable, "-m", "izzi_proxy", "configure", *args]
    # a session of its own: no controlling terminal, so a question is never waited for
    return subprocess.run(command, env=env, input=stdin, capture_output=True, text=True, timeout=60, check=False,
                          start_new_session=True)  # fmt: skip


def snapshot(home: Path) -> dict[str, bytes]:
    return {str(p.relative_to(home)): p.read_bytes() for p in sorted(home.rglob("*")) if p.is_file()}


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return fake_home(tmp_path)


def root(gateway: Gateway) -> str:
    return str(gateway.server.make_url("")).rstrip("/")


async def configure(gateway: Gateway, home: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(run, home, "--url", root(gateway), "--key", gateway.key, *extra)


async def test_every_detected_tool_is_configured_in_its_own_file(gateway: Gateway, home: Path) -> None:
    done = await configure(gateway, home, "--yes")
    assert done.returncode == 0, done.stderr
    url, key = root(gateway), gateway.key
    assert key not in done.stdout and key not in done.stderr

    claude = json.loads((home / ".claude" / "settings.json").read_text())
    assert claude["theme"] == "dark" and claude["env"]["FOO"] == "1" and "ANTHROPIC_API_KEY" not in claude["env"]
    assert claude["env"]["ANTHROPIC_BASE_URL"] == url and claude["env"]["ANTHROPIC_AUTH_TOKEN"] == key
    assert claude["env"]["ANTHROPIC_MODEL"] == claude["env"]["ANTHROPIC_DEFAULT_SONNET_MODEL"] == "claude-sonnet-4.5"

    codex = tomllib.loads((home / ".codex" / "config.toml").read_text())
    assert (
        codex["model_provider"] == "izzi" and codex["model"] == "gpt-5.1-codex" and codex["approval_policy"] == "never"
    )
    assert codex["profiles"] == {"fast": {"model": "o4-mini"}}
    assert codex["model_providers"]["izzi"] == {"name": "Izzi Gateway", "base_url": url + "/v1", "env_key": "IZZI_API_KEY",
                                                "wire_api": "responses", "supports_websockets": False}  # fmt: skip
    bashrc = (home / ".bashrc").read_text()
    assert bashrc.startswith("alias ll='ls -l'\n") and f"export IZZI_API_KEY='{key}'" in bashrc

    assert (home / ".gemini" / ".env").read_text() == f"GOOGLE_GEMINI_BASE_URL={url}\nGEMINI_API_KEY={key}\n"
    gemini = json.loads((home / ".gemini" / "settings.json").read_text())
    assert gemini == {"security": {"auth": {"selectedType": "gemini-api-key"}}, "ui": {"theme": "GitHub"}}

    aider = (home / ".aider.conf.yml").read_text()
    assert (
        aider
        == f'dark-mode: true\nmodel: "openai/claude-sonnet-4.5"\nopenai-api-base: "{url}/v1"\nopenai-api-key: "{key}"\n'
    )

    openclaw = json.loads((home / ".openclaw" / "openclaw.json").read_text())
    provider = openclaw["models"]["providers"]["izzi"]
    async with gateway.client() as client:
        ids = [m.id for m in (await client.models.list()).data]
    assert provider["baseUrl"] == url + "/v1" and provider["apiKey"] == key and provider["api"] == "openai-completions"
    assert [m["id"] for m in provider["models"]] == ids and openclaw["agents"]["defaults"]["model"][
        "primary"
    ] == f"izzi/{ids[0]}"

    opencode = json.loads((home / ".config" / "opencode" / "opencode.json").read_text())
    assert opencode["provider"]["izzi"]["options"] == {"baseURL": url + "/v1", "apiKey": key}
    assert list(opencode["provider"]["izzi"]["models"]) == ids and opencode["model"] == "izzi/claude-sonnet-4.5"

    for path in (".claude/settings.json", ".codex/config.toml", ".gemini/.env", ".openclaw/openclaw.json", ".bashrc"):
        assert stat.S_IMODE((home / path).stat().st_mode) == 0o600, path  # they hold the key


async def test_a_second_run_changes_nothing(gateway: Gateway, home: Path) -> None:
    assert (await configure(gateway, home, "--yes")).returncode == 0
    before = snapshot(home)
    again = await configure(gateway, home, "--yes")
    assert again.returncode == 0 and "Nothing to change." in again.stdout
    assert snapshot(home) == before


async def test_a_dry_run_shows_masked_diffs_and_writes_nothing(gateway: Gateway, home: Path) -> None:
    before = snapshot(home)
    shown = await configure(gateway, home, "--dry-run")
    assert shown.returncode == 0 and "Dry run: nothing was written." in shown.stdout
    assert gateway.key not in shown.stdout and gateway.key[:9] + "…" in shown.stdout
    assert f"+++ {home / '.claude' / 'settings.json'}" in shown.stdout and "--- /dev/null" in shown.stdout
    assert snapshot(home) == before and not (home / ".izzi").exists()


async def test_without_yes_and_no_terminal_nothing_is_written(gateway: Gateway, home: Path) -> None:
    before = snapshot(home)
    refused = await configure(gateway, home)
    assert refused.returncode != 0 and ("--yes" in refused.stderr or "Nothing was written" in refused.stdout)
    assert snapshot(home) == before


async def test_undo_restores_the_originals(gateway: Gateway, home: Path) -> None:
    before = snapshot(home)
    assert (await configure(gateway, home, "--yes")).returncode == 0
    assert (await configure(gateway, home, "--yes", "--model", "gpt-4o")).returncode == 0  # a second change
    undone = run(home, "--undo")
    assert undone.returncode == 0 and "restored" in undone.stdout and "removed" in undone.stdout
    assert snapshot(home) == before  # created files gone, changed ones byte for byte as they were
    assert "Nothing to undo" in run(home, "--undo").stdout


async def test_a_file_it_cannot_merge_is_left_alone(gateway: Gateway, home: Path) -> None:
    (home / ".openclaw" / "openclaw.json").write_text("{ // JSON5, with a comment\n  gateway: {} }\n")
    done = await configure(gateway, home, "--yes")
    assert done.returncode == 0 and "openclaw.json is not plain JSON" in done.stdout
    assert (home / ".openclaw" / "openclaw.json").read_text().startswith("{ // JSON5")
    assert "ANTHROPIC_BASE_URL" in (home / ".claude" / "settings.json").read_text()


async def test_a_key_the_gateway_refuses_writes_nothing(gateway: Gateway, home: Path) -> None:
    before = snapshot(home)
    refused = await asyncio.to_thread(run, home, "--url", root(gateway), "--key", "izzi-wrong-key-0000000000", "--yes")
    assert refused.returncode != 0 and "did not accept this key" in refused.stderr and "HTTP 401" in refused.stderr
    assert "izzi-wrong-key-0000000000" not in refused.stderr
    assert snapshot(home) == before


async def test_check_proves_each_tool_reaches_the_gateway(gateway: Gateway, home: Path) -> None:
    assert (await configure(gateway, home, "--yes")).returncode == 0
    checked = await asyncio.to_thread(run, home, "--check", "--live", "--model", "gpt-4o")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    for tool, dialect in (("Claude Code", "anthropic"), ("Codex", "responses"), ("Gemini CLI", "gemini"),
                          ("aider", "openai"), ("OpenClaw", "openai"), ("OpenCode", "openai")):  # fmt: skip
        line = next(line for line in checked.stdout.splitlines() if line.strip().startswith(tool + ":"))
        assert "OK" in line and f"{dialect} format" in line and "gpt-4o answered" in line, line
    assert gateway.key not in checked.stdout
    settings = home / ".claude" / "settings.json"
    settings.write_text(settings.read_text().replace(gateway.key, "izzi-revoked-00000000000000"))
    failed = await asyncio.to_thread(run, home, "--check")
    assert failed.returncode == 1 and "Claude Code: FAILED (HTTP 401" in failed.stdout


async def test_the_served_script_fills_in_the_gateway_and_configures_the_same(
    gateway: Gateway, home: Path, tmp_path: Path
) -> None:
    async with aiohttp.ClientSession() as session, session.get(gateway.server.make_url("/configure.py")) as response:
        assert response.status == 200 and response.content_type == "text/x-python"
        script = await response.text()
    assert f"GATEWAY_URL: str | None = {root(gateway)!r}" in script and "import izzi_proxy" not in script
    env_home = tmp_path / "other"
    other = fake_home(env_home)
    # as `curl … | python3 - --key …` runs it: the script on stdin, no package importable
    done = await asyncio.to_thread(subprocess.run, [sys.executable, "-I", "-", "--key", gateway.key, "--yes"],
                                   input=script, capture_output=True, text=True, timeout=60, check=False,
                                   env={"HOME": str(other), "XDG_CONFIG_HOME": str(other / ".config"), "PATH": "/nonexistent"})  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads((other / ".claude" / "settings.json").read_text())["env"]["ANTHROPIC_BASE_URL"] == root(gateway)


async def test_the_served_url_comes_from_config_or_a_trusted_proxy(gateway: Gateway) -> None:
    import dataclasses

    from izzi_proxy.keys import CONFIG

    url = gateway.server.make_url("/configure.py")
    headers = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "gw.example.com"}
    async with aiohttp.ClientSession() as session:
        async with session.get(url, headers=headers) as response:  # an untrusted peer's headers are not believed
            assert "'https://gw.example.com'" not in await response.text()
        config = gateway.app[CONFIG]
        import ipaddress

        trusting = dataclasses.replace(config.ip_block, trusted_proxies=(ipaddress.ip_network("127.0.0.0/8"),))
        object.__setattr__(config, "ip_block", trusting)
        async with session.get(url, headers=headers) as response:
            assert "GATEWAY_URL: str | None = 'https://gw.example.com'" in await response.text()
        object.__setattr__(config, "server", dataclasses.replace(config.server, public_url="https://izzi.example.org"))
        async with session.get(url, headers=headers) as response:
            assert "GATEWAY_URL: str | None = 'https://izzi.example.org'" in await response.text()


def test_windows_paths() -> None:
    place = Place.here(
        {"USERPROFILE": r"C:\Users\lan", "APPDATA": r"C:\Users\lan\AppData\Roaming", "PATH": ""}, windows=True
    )
    assert str(place.home) == r"C:\Users\lan" and place.codex == place.home / ".codex"
    assert place.xdg == place.home / ".config"  # OpenCode's, on Windows too
    assert place.state == Path(r"C:\Users\lan\AppData\Roaming") / "izzi" / "configure" and place.profiles() == []
    mac = Place.here({"HOME": "/Users/lan", "SHELL": "/bin/zsh", "PATH": ""}, windows=False)
    assert mac.config == Path("/Users/lan/.config") and mac.profiles() == [Path("/Users/lan/.zshrc")]


async def test_codex_config_it_cannot_edit_safely_is_left_alone(gateway: Gateway, home: Path) -> None:
    tricky = 'notes = """\n[model_providers.izzi]\n"""\nmodel = "o3"\n'  # a table header inside a string
    (home / ".codex" / "config.toml").write_text(tricky)
    done = await configure(gateway, home, "--yes")
    assert done.returncode == 0 and "config.toml could not be edited safely" in done.stdout
    assert (home / ".codex" / "config.toml").read_text() == tricky
