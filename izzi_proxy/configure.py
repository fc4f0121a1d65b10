#!/usr/bin/env python3
"""Point a user's coding tools at an Izzi Gateway, in one command.

    izzi-proxy configure --url https://GATEWAY --key izzi-…
    curl -fsSL https://GATEWAY/configure.py | python3 - --key izzi-…

It detects the tools installed here (a binary on PATH, a config folder) and writes each
one's own configuration file in its own format, merged with what is there: Claude Code
(``~/.claude/settings.json``), Codex (``~/.codex/config.toml``, its key in a marked block of
the shell profile), the Gemini CLI (``~/.gemini/.env`` and ``settings.json``), aider
(``~/.aider.conf.yml``), OpenClaw (``~/.openclaw/openclaw.json``, every catalog model) and
OpenCode (``~/.config/opencode/opencode.json``). For the editors that keep settings in
their own database (Cursor, Windsurf, Cline) it prints the steps with the values filled in.

``--dry-run`` shows a diff per file (the key masked) and writes nothing; otherwise it asks
first unless ``--yes``. Every file it changes is backed up once (``~/.izzi/configure``) and
written atomically; ``--undo`` restores the originals (and removes files it created); a
second run changes nothing. ``--check`` proves, per configured tool, that the gateway
answers the key the tool's files hold, in the format the tool speaks (``--live``: with one
tiny completion too).

This file uses the standard library only: the gateway serves it as it is, with its own
public URL filled in below, so a user needs nothing installed but Python 3.9+.
"""

from __future__ import annotations

import argparse
import difflib
import getpass
import json
import os
import re
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GATEWAY_URL: str | None = None  # filled in by the gateway that serves this file
MARK_BEGIN = "# >>> izzi-gateway >>>"
MARK_END = "# <<< izzi-gateway <<<"
KEY_ENV = "IZZI_API_KEY"
TIMEOUT_S = 15


class Refused(Exception):
    """A file that cannot be merged safely (not valid JSON, say): it is left alone."""


def mask(key: str) -> str:
    return key[:9] + "…" + key[-4:] if len(key) > 16 else "izzi-…"


# -- where things live ----------------------------------------------------------------------------


@dataclass
class Place:
    """The home, config folders and PATH this run looks at (from the environment)."""

    home: Path
    config: Path  # XDG_CONFIG_HOME, or %APPDATA% on Windows
    windows: bool
    path: str
    shell: str
    codex: Path  # CODEX_HOME, else ~/.codex
    xdg: Path  # XDG_CONFIG_HOME, else ~/.config (OpenCode reads it on every system)

    @classmethod
    def here(cls, environ: dict[str, str] | None = None, windows: bool | None = None) -> Place:
        env = dict(os.environ if environ is None else environ)
        windows = os.name == "nt" if windows is None else windows
        home = Path(env.get("USERPROFILE") if windows and env.get("USERPROFILE") else env.get("HOME") or Path.home())
        if windows:
            config = Path(env.get("APPDATA") or home / "AppData" / "Roaming")
        else:
            config = Path(env.get("XDG_CONFIG_HOME") or home / ".config")
        codex = Path(env.get("CODEX_HOME") or home / ".codex")
        xdg = Path(env.get("XDG_CONFIG_HOME") or home / ".config")
        return cls(home, config, windows, env.get("PATH", ""), env.get("SHELL", ""), codex, xdg)

    def which(self, name: str) -> bool:
        return shutil.which(name, path=self.path) is not None

    @property
    def state(self) -> Path:
        return (self.config / "izzi" / "configure") if self.windows else self.home / ".izzi" / "configure"

    def profiles(self) -> list[Path]:
        """The shell profiles to hold the key's export: those that exist, else the shell's."""
        if self.windows:
            return []
        candidates = [self.home / name for name in (".bashrc", ".zshrc", ".profile")]
        found = [p for p in candidates if p.exists()]
        if found:
            return found
        return [self.home / (".zshrc" if self.shell.endswith("zsh") else ".bashrc")]


# -- what a run plans ------------------------------------------------------------------------------


@dataclass
class Change:
    tool: str
    path: Path
    old: str | None  # None: the file does not exist yet
    new: str
    private: bool = True  # holds the key: written 0600


@dataclass
class Setup:
    url: str  # the gateway's root, no /v1
    key: str
    models: list[dict[str, Any]]
    model: str | None = None  # the default model asked for (--model)

    @property
    def ids(self) -> list[str]:
        return [m["id"] for m in self.models]

    def pick(self, *patterns: str) -> str | None:
        """The first catalog id matching one of the patterns, in order."""
        for pattern in patterns:
            for model_id in self.ids:
                if re.search(pattern, model_id):
                    return model_id
        return None


@dataclass
class Tool:
    name: str
    detect: Callable[[Place], bool]
    plan: Callable[[Place, Setup], list[Change]]
    steps: Callable[[Setup], str] | None = None  # manual steps, for tools without files
    check: Callable[[Place], Probe] | None = None


@dataclass
class Probe:
    """How to prove the gateway answers a configured tool: its URL, key and dialect."""

    url: str
    key: str
    dialect: str  # anthropic | openai | responses | gemini


# -- reading and writing files ---------------------------------------------------------------------


def read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


def load_json(path: Path, text: str | None) -> dict[str, Any]:
    if text is None or not text.strip():
        return {}
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise Refused(f"{path} is not plain JSON ({exc}); left as it is") from None
    if not isinstance(data, dict):
        raise Refused(f"{path} does not hold a JSON object; left as it is")
    return data


def dump_json(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def merged(path: Path, tool: str, patch: Callable[[dict[str, Any]], None]) -> Change:
    old = read(path)
    data = load_json(path, old)
    patch(data)
    return Change(tool, path, old, dump_json(data))


def section(data: dict[str, Any], *keys: str) -> dict[str, Any]:
    """``data[k1][k2]…``, made (as objects) where missing."""
    for key in keys:
        if not isinstance(data.get(key), dict):
            data[key] = {}
        data = data[key]
    return data


def set_lines(text: str | None, values: dict[str, str], pattern: str, line: Callable[[str, str], str]) -> str:
    """A line-oriented file (``.env``, YAML's top level) with each key's line replaced in
    place, or appended; other lines kept as they are."""
    lines = (text or "").splitlines()
    done = set()
    for i, current in enumerate(lines):
        found = re.match(pattern, current)
        if found and found.group(1) in values and found.group(1) not in done:
            lines[i] = line(found.group(1), values[found.group(1)])
            done.add(found.group(1))
    lines += [line(k, v) for k, v in values.items() if k not in done]
    return "\n".join(lines) + "\n"


def marked_block(text: str | None, body: list[str]) -> str:
    """``text`` with the gateway's marked block replaced (or added at the end)."""
    block = "\n".join([MARK_BEGIN, *body, MARK_END])
    text = text or ""
    pattern = re.compile(re.escape(MARK_BEGIN) + r".*?" + re.escape(MARK_END), re.S)
    if pattern.search(text):
        return pattern.sub(lambda _: block, text, count=1)
    return text + ("" if not text or text.endswith("\n") else "\n") + ("\n" if text else "") + block + "\n"


def atomic_write(path: Path, text: str, private: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = 0o600 if private else 0o644
    if path.exists():
        mode = path.stat().st_mode & 0o777 & (0o600 if private else 0o777)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".izzi-tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
            out.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# -- the tools -------------------------------------------------------------------------------------


def claude_plan(place: Place, setup: Setup) -> list[Change]:
    sonnet = setup.model or setup.pick(r"^claude-sonnet") or setup.pick(r"claude")
    env = {"ANTHROPIC_BASE_URL": setup.url, "ANTHROPIC_AUTH_TOKEN": setup.key}
    for name, found in (("ANTHROPIC_MODEL", sonnet), ("ANTHROPIC_DEFAULT_OPUS_MODEL", setup.pick(r"^claude-opus")),
                        ("ANTHROPIC_DEFAULT_SONNET_MODEL", setup.pick(r"^claude-sonnet")),
                        ("ANTHROPIC_DEFAULT_HAIKU_MODEL", setup.pick(r"^claude-haiku")),
                        ("ANTHROPIC_SMALL_FAST_MODEL", setup.pick(r"^claude-haiku"))):  # fmt: skip
        if found:
            env[name] = found

    def patch(data: dict[str, Any]) -> None:
        block = section(data, "env")
        block.pop("ANTHROPIC_API_KEY", None)  # one credential: the token (a stale key would win)
        block.update(env)

    return [merged(place.home / ".claude" / "settings.json", "Claude Code", patch)]


def claude_probe(place: Place) -> Probe:
    path = place.home / ".claude" / "settings.json"
    env = load_json(path, read(path)).get("env", {})
    return Probe(env.get("ANTHROPIC_BASE_URL", ""), env.get("ANTHROPIC_AUTH_TOKEN", ""), "anthropic")


_TOML_TABLE = re.compile(r"^\s*\[")


def toml_string(value: str) -> str:
    return json.dumps(value)  # a TOML basic string is JSON's, for what is written here


def codex_plan(place: Place, setup: Setup) -> list[Change]:
    """``model_provider = "izzi"`` and its table; the key in ``IZZI_API_KEY`` (``env_key``),
    exported by a marked block of the shell profile. The file is edited by lines: the
    top-level keys it sets are replaced where they are, the provider's table rewritten."""
    path = place.codex / "config.toml"
    old = read(path)
    model = setup.model or setup.pick(r"codex", r"^gpt-5") or (setup.ids[0] if setup.ids else "auto")
    top = {"model": toml_string(model), "model_provider": toml_string("izzi")}
    table = [
        "[model_providers.izzi]",
        'name = "Izzi Gateway"',
        f"base_url = {toml_string(setup.url + '/v1')}",
        f'env_key = "{KEY_ENV}"',
        'wire_api = "responses"',
        "supports_websockets = false  # the gateway serves Responses over HTTP",
    ]
    lines = (old or "").splitlines()
    first_table = next((i for i, line in enumerate(lines) if _TOML_TABLE.match(line)), len(lines))
    head, rest = lines[:first_table], lines[first_table:]
    head = [line for line in head if not re.match(r"^\s*(model|model_provider)\s*=", line)]
    while head and not head[-1].strip():
        head.pop()
    kept, skipping = [], False
    for line in rest:
        if _TOML_TABLE.match(line):
            skipping = line.strip() == "[model_providers.izzi]"
        if not skipping:
            kept.append(line)
    while kept and not kept[-1].strip():
        kept.pop()
    out = [f"{k} = {v}" for k, v in top.items()] + head
    out += [""] + ([*kept, ""] if kept else []) + table
    new = "\n".join(out) + "\n"
    if not toml_ok(new):
        raise Refused(f"{path} could not be edited safely (its TOML is unusual); left as it is")
    changes = [Change("Codex", path, old, new)]
    for profile in place.profiles():
        text = read(profile)
        body = [f"export {KEY_ENV}={shell_quote(setup.key)}  # Codex reads the gateway's key from here"]
        changes.append(Change("Codex", profile, text, marked_block(text, body)))
    return changes


def toml_ok(text: str) -> bool:
    """Whether the edited file still parses (where Python has tomllib: 3.11 and newer)."""
    try:
        import tomllib
    except ImportError:
        return True
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return False
    return True


def shell_quote(value: str) -> str:
    return "'" + value.replace("'", "'\"'\"'") + "'"


def codex_probe(place: Place) -> Probe:
    text = read(place.codex / "config.toml") or ""
    url = re.search(r'^\s*base_url\s*=\s*"([^"]*)"', text.split("[model_providers.izzi]", 1)[-1], re.M)
    key = ""
    for profile in place.profiles():
        found = re.search(rf"export {KEY_ENV}='([^']*)'", read(profile) or "")
        key = key or (found.group(1) if found else "")
    return Probe((url.group(1) if url else "").removesuffix("/v1"), key, "responses")


def gemini_plan(place: Place, setup: Setup) -> list[Change]:
    folder = place.home / ".gemini"
    env_path = folder / ".env"
    env_old = read(env_path)
    values = {"GOOGLE_GEMINI_BASE_URL": setup.url, "GEMINI_API_KEY": setup.key}
    env_new = set_lines(env_old, values, r"^\s*(?:export\s+)?([A-Z_]+)\s*=", lambda k, v: f"{k}={v}")

    def patch(data: dict[str, Any]) -> None:
        section(data, "security", "auth")["selectedType"] = "gemini-api-key"  # outranks a stale oauth-personal
        if setup.model:
            section(data, "model")["name"] = setup.model

    return [Change("Gemini CLI", env_path, env_old, env_new), merged(folder / "settings.json", "Gemini CLI", patch)]


def gemini_probe(place: Place) -> Probe:
    values = dict(re.findall(r"^\s*([A-Z_]+)=(.*)$", read(place.home / ".gemini" / ".env") or "", re.M))
    return Probe(values.get("GOOGLE_GEMINI_BASE_URL", ""), values.get("GEMINI_API_KEY", ""), "gemini")


def aider_plan(place: Place, setup: Setup) -> list[Change]:
    path = place.home / ".aider.conf.yml"
    old = read(path)
    model = setup.model or setup.pick(r"^claude-sonnet") or (setup.ids[0] if setup.ids else "auto")
    values = {"openai-api-base": setup.url + "/v1", "openai-api-key": setup.key, "model": f"openai/{model}"}
    new = set_lines(old, values, r"^([a-z][a-z0-9-]*)\s*:", lambda k, v: f"{k}: {json.dumps(v)}")
    return [Change("aider", path, old, new)]


def aider_probe(place: Place) -> Probe:
    values = dict(
        re.findall(r"^([a-z][a-z0-9-]*)\s*:\s*\"?([^\"\n]*)\"?\s*$", read(place.home / ".aider.conf.yml") or "", re.M)
    )
    return Probe(values.get("openai-api-base", "").removesuffix("/v1"), values.get("openai-api-key", ""), "openai")


def openclaw_plan(place: Place, setup: Setup) -> list[Change]:
    models = [
        {"id": m["id"], "name": m.get("name") or m["id"], "reasoning": bool(m.get("reasoning")), "input": ["text"],
         "contextWindow": m.get("context_window") or 128000}
        for m in setup.models
    ]  # fmt: skip

    def patch(data: dict[str, Any]) -> None:
        config = section(data, "models")
        config.setdefault("mode", "merge")
        section(config, "providers")["izzi"] = {
            "baseUrl": setup.url + "/v1", "apiKey": setup.key, "api": "openai-completions", "models": models,
        }  # fmt: skip
        default = setup.model or ("auto" if "auto" in setup.ids else (setup.ids[0] if setup.ids else "auto"))
        section(data, "agents", "defaults", "model")["primary"] = f"izzi/{default}"

    return [merged(place.home / ".openclaw" / "openclaw.json", "OpenClaw", patch)]


def openclaw_probe(place: Place) -> Probe:
    path = place.home / ".openclaw" / "openclaw.json"
    data = load_json(path, read(path))
    provider = data.get("models", {}).get("providers", {}).get("izzi", {})
    return Probe(str(provider.get("baseUrl", "")).removesuffix("/v1"), provider.get("apiKey", ""), "openai")


def opencode_path(place: Place) -> Path:
    return place.xdg / "opencode" / "opencode.json"


def opencode_plan(place: Place, setup: Setup) -> list[Change]:
    def patch(data: dict[str, Any]) -> None:
        data.setdefault("$schema", "https://opencode.ai/config.json")
        section(data, "provider")["izzi"] = {
            "npm": "@ai-sdk/openai-compatible",
            "name": "Izzi Gateway",
            "options": {"baseURL": setup.url + "/v1", "apiKey": setup.key},
            "models": {m["id"]: {"name": m.get("name") or m["id"]} for m in setup.models},
        }
        default = setup.model or setup.pick(r"^claude-sonnet") or (setup.ids[0] if setup.ids else "auto")
        data["model"] = f"izzi/{default}"

    return [merged(opencode_path(place), "OpenCode", patch)]


def opencode_probe(place: Place) -> Probe:
    data = load_json(opencode_path(place), read(opencode_path(place)))
    options = data.get("provider", {}).get("izzi", {}).get("options", {})
    return Probe(str(options.get("baseURL", "")).removesuffix("/v1"), options.get("apiKey", ""), "openai")


def editor_steps(editor: str, setup: Setup) -> str:
    return (
        f"{editor}: Settings → Models → OpenAI API key: your key ({mask(setup.key)}); turn on "
        f'"Override OpenAI Base URL" and enter {setup.url}/v1; add the models you use '
        f"(e.g. {', '.join(setup.ids[:3]) or 'auto'})."
    )


def cline_steps(setup: Setup) -> str:
    return (
        f'Cline: in its settings pick the "Anthropic" provider, tick "Use custom base URL", enter '
        f"{setup.url} and your key ({mask(setup.key)}); choose a model such as "
        f"{setup.pick(r'^claude-sonnet') or (setup.ids[0] if setup.ids else 'auto')}. (Cline keeps its settings "
        "in the editor's own storage, not in a file.)"
    )


def _extension(place: Place, prefix: str) -> bool:
    folders = [place.home / d / "extensions" for d in (".vscode", ".vscode-server", ".cursor", ".windsurf")]
    return any(f.is_dir() and any(p.name.lower().startswith(prefix) for p in f.iterdir()) for f in folders)


TOOLS = [
    Tool("Claude Code", lambda p: p.which("claude") or (p.home / ".claude").is_dir(), claude_plan, check=claude_probe),
    Tool("Codex", lambda p: p.which("codex") or p.codex.is_dir(), codex_plan, check=codex_probe),
    Tool("Gemini CLI", lambda p: p.which("gemini") or (p.home / ".gemini").is_dir(), gemini_plan, check=gemini_probe),
    Tool("aider", lambda p: p.which("aider") or (p.home / ".aider.conf.yml").exists(), aider_plan, check=aider_probe),
    Tool("OpenClaw", lambda p: p.which("openclaw") or (p.home / ".openclaw").is_dir(), openclaw_plan,
         check=openclaw_probe),
    Tool("OpenCode", lambda p: p.which("opencode") or opencode_path(p).parent.is_dir(), opencode_plan,
         check=opencode_probe),
    Tool("Cline", lambda p: _extension(p, "saoudrizwan.claude-dev"), lambda p, s: [], steps=cline_steps),
    Tool("Cursor", lambda p: p.which("cursor") or (p.home / ".cursor").is_dir(), lambda p, s: [],
         steps=lambda s: editor_steps("Cursor", s)),
    Tool("Windsurf", lambda p: p.which("windsurf") or (p.home / ".windsurf").is_dir() or (p.home / ".codeium").is_dir(),
         lambda p, s: [], steps=lambda s: editor_steps("Windsurf", s)),
]  # fmt: skip


# -- the gateway -----------------------------------------------------------------------------------


def request(url: str, key: str, dialect: str, body: dict[str, Any] | None = None, path: str = "") -> Any:
    headers = {"Content-Type": "application/json", "User-Agent": "izzi-configure"}
    if dialect == "anthropic":
        headers |= {"x-api-key": key, "anthropic-version": "2023-06-01"}
    elif dialect == "gemini":
        headers["x-goog-api-key"] = key
    else:
        headers["Authorization"] = f"Bearer {key}"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url.rstrip("/") + path, data=data, headers=headers, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT_S) as answer:
            return json.loads(answer.read() or b"{}")
    except urllib.error.HTTPError as exc:
        detail = exc.read()[:500].decode("utf-8", "replace")
        raise RuntimeError(f"HTTP {exc.code}: {detail.replace(key, mask(key))}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise RuntimeError(f"cannot reach {url}: {exc}") from None


def catalog(url: str, key: str) -> list[dict[str, Any]]:
    """The gateway's models (``GET /v1/models``): also proves the URL and the key."""
    answer = request(url, key, "openai", path="/v1/models")
    models = answer.get("data") if isinstance(answer, dict) else None
    if not isinstance(models, list):
        raise RuntimeError(f"{url}/v1/models did not answer with a model list")
    return [m for m in models if isinstance(m, dict) and isinstance(m.get("id"), str)]


HI = [{"role": "user", "content": "hi"}]
LIVE = {
    "anthropic": ("/v1/messages", lambda m: {"model": m, "max_tokens": 1, "messages": HI}),
    "openai": ("/v1/chat/completions", lambda m: {"model": m, "max_tokens": 1, "messages": HI}),
    "responses": ("/v1/responses", lambda m: {"model": m, "max_output_tokens": 16, "input": "hi", "store": False}),
    "gemini": ("/v1beta/models/{model}:generateContent",
               lambda m: {"contents": [{"parts": [{"text": "hi"}]}], "generationConfig": {"maxOutputTokens": 1}}),
}  # fmt: skip
LIST = {"anthropic": "/v1/models", "openai": "/v1/models", "responses": "/v1/models", "gemini": "/v1beta/models"}


def check(place: Place, tools: list[Tool], live: bool, model: str, out: Any) -> bool:
    ok = True
    for tool in tools:
        if tool.check is None:
            continue
        try:
            probe = tool.check(place)
        except Refused as exc:
            print(f"  {tool.name}: {exc}", file=out)
            ok = False
            continue
        if not probe.url or not probe.key:
            print(f"  {tool.name}: not configured for a gateway", file=out)
            ok = False
            continue
        try:
            request(probe.url, probe.key, probe.dialect, path=LIST[probe.dialect])
            said = "the gateway answers its key"
            if live:
                path, body = LIVE[probe.dialect]
                request(probe.url, probe.key, probe.dialect, body(model), path.replace("{model}", model))
                said += f", and {model} answered a completion"
            print(f"  {tool.name}: OK ({said} at {probe.url}, key {mask(probe.key)}, {probe.dialect} format)", file=out)
        except RuntimeError as exc:
            print(f"  {tool.name}: FAILED ({exc})", file=out)
            ok = False
    return ok


# -- backups and undo ------------------------------------------------------------------------------


def manifest_path(place: Place) -> Path:
    return place.state / "manifest.json"


def load_manifest(place: Place) -> dict[str, str | None]:
    """Each changed file -> its original's backup (None: the file did not exist)."""
    try:
        return json.loads(manifest_path(place).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return {}


def apply(place: Place, changes: list[Change]) -> None:
    manifest = load_manifest(place)
    backups = place.state / "backups"
    for change in changes:
        key = str(change.path)
        if key not in manifest:  # the first run's original is the one to restore
            if change.old is None:
                manifest[key] = None
            else:
                backups.mkdir(parents=True, exist_ok=True)
                backup = backups / f"{len(manifest):03d}-{change.path.name}"
                shutil.copy2(change.path, backup)
                manifest[key] = str(backup)
            atomic_write(manifest_path(place), json.dumps(manifest, indent=2) + "\n", private=True)
        atomic_write(change.path, change.new, change.private)


def undo(place: Place, out: Any) -> int:
    manifest = load_manifest(place)
    if not manifest:
        print("Nothing to undo: no configuration was written by this command here.", file=out)
        return 0
    for target, backup in manifest.items():
        path = Path(target)
        if backup is None:
            if path.exists():
                path.unlink()
            print(f"  removed {path} (it did not exist before)", file=out)
        else:
            text = Path(backup).read_text(encoding="utf-8")
            atomic_write(path, text, private=True)
            shutil.copymode(backup, path)
            print(f"  restored {path}", file=out)
    shutil.rmtree(place.state)
    return 0


# -- the command -----------------------------------------------------------------------------------


def diff(change: Change, key: str) -> str:
    old = (change.old or "").replace(key, mask(key)).splitlines(keepends=True)
    new = change.new.replace(key, mask(key)).splitlines(keepends=True)
    label = str(change.path)
    return "".join(difflib.unified_diff(old, new, "/dev/null" if change.old is None else label, label))


def ask(question: str) -> bool:
    """A yes/no from the terminal, even when stdin is this script (``curl … | python3 -``)."""
    try:
        with open("/dev/tty", encoding="utf-8") as tty:
            print(question, end=" ", flush=True, file=sys.stderr)
            return tty.readline().strip().lower() in ("y", "yes")
    except OSError:
        if sys.stdin.isatty():
            return input(question + " ").strip().lower() in ("y", "yes")
        raise SystemExit("No terminal to ask on: run again with --yes (or --dry-run to see the changes)") from None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="izzi-proxy configure", description="Point your coding tools at an Izzi Gateway.")
    p.add_argument("--url", default=os.environ.get("IZZI_URL") or GATEWAY_URL, help="the gateway's URL")
    p.add_argument("--key", help=f"your izzi-… key (else ${KEY_ENV}, else asked for)")
    p.add_argument("--model", help="the default model to set where a tool has one (a catalog id)")
    p.add_argument("--only", help="comma-separated tools to configure (default: every one detected)")
    p.add_argument("--dry-run", action="store_true", help="show what would change, write nothing")
    p.add_argument("--yes", "-y", action="store_true", help="write without asking")
    p.add_argument("--undo", action="store_true", help="restore every file this command changed")
    p.add_argument("--check", action="store_true", help="prove each configured tool reaches the gateway")
    p.add_argument("--live", action="store_true", help="with --check: one tiny completion per tool")
    return p


def chosen(place: Place, only: str | None) -> list[Tool]:
    if only:
        names = {n.strip().lower() for n in only.split(",") if n.strip()}
        unknown = names - {t.name.lower() for t in TOOLS}
        if unknown:
            raise SystemExit(
                f"Unknown tool(s): {', '.join(sorted(unknown))}; known: {', '.join(t.name for t in TOOLS)}"
            )
        return [t for t in TOOLS if t.name.lower() in names]
    return [t for t in TOOLS if t.detect(place)]


def main(argv: list[str] | None = None, place: Place | None = None, out: Any = None) -> int:
    args = parser().parse_args(argv)
    place = place or Place.here()
    out = out or sys.stdout
    if args.undo:
        return undo(place, out)
    tools = chosen(place, args.only)
    if args.check:
        print("Checking the configured tools:", file=out)
        return 0 if check(place, tools, args.live, args.model or "auto", out) else 1
    if not args.url:
        raise SystemExit("Which gateway? Pass --url https://… (or set IZZI_URL)")
    url = args.url.rstrip("/").removesuffix("/v1")
    key = args.key or os.environ.get(KEY_ENV) or getpass.getpass("Your izzi-… key: ")
    if not key.strip():
        raise SystemExit("No key given")
    key = key.strip()
    try:
        models = catalog(url, key)
    except RuntimeError as exc:
        raise SystemExit(f"The gateway did not accept this key: {exc}") from None
    setup = Setup(url, key, models, args.model)
    if args.model and args.model not in setup.ids:
        raise SystemExit(f"--model {args.model!r} is not in the gateway's catalog")
    if not tools:
        print("No supported tool found here (Claude Code, Codex, Gemini CLI, aider, OpenClaw, OpenCode, "
              "Cline, Cursor, Windsurf); --only NAME configures one anyway.", file=out)  # fmt: skip
        return 0
    changes: list[Change] = []
    for tool in tools:
        try:
            planned = [c for c in tool.plan(place, setup) if c.new != c.old]
        except Refused as exc:
            print(f"{tool.name}: {exc}", file=out)
            continue
        changes += planned
        state = "already set up" if not planned and tool.steps is None else f"{len(planned)} file(s) to change"
        print(f"{tool.name}: {state if tool.steps is None else 'set up by hand:'}", file=out)
        if tool.steps is not None:
            print("  " + tool.steps(setup), file=out)
    if not changes:
        print("Nothing to change.", file=out)
        return 0
    for change in changes:
        print(diff(change, key), file=out, end="")
    if args.dry_run:
        print("Dry run: nothing was written.", file=out)
        return 0
    if not args.yes and not ask(f"Write these {len(changes)} change(s)? [y/N]"):
        print("Nothing was written.", file=out)
        return 1
    apply(place, changes)
    print(f"Written. Originals are kept in {place.state}; `--undo` restores them.", file=out)
    if any(c.tool == "Codex" for c in changes):
        if place.windows:
            print(f"Codex reads {KEY_ENV} from the environment: run  setx {KEY_ENV} <your key>  and open a new "
                  "terminal.", file=out)  # fmt: skip
        else:
            print(f"Codex reads {KEY_ENV} from your shell profile: open a new terminal first.", file=out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
