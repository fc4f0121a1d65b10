"""The deployment files in the repository, tested as far as this machine can: the systemd
unit's commands run the gateway (start, reload, stop) with the environment file it names,
the compose file holds together, and the image's recipe copies and installs what exists.
(Building the image needs a container engine: ``scripts/image`` builds and probes it.)"""

from __future__ import annotations

import asyncio
import configparser
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import aiohttp
import pytest
import yaml

from izzi_proxy.config import load_config
from tests.conftest import free_port
from tests.e2e.test_limits_shared import RedisServer
from tests.e2e.test_workers import children

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
pytestmark = pytest.mark.timeout(120)


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # systemd's keys are case-sensitive
    parser.read(DEPLOY / "izzi-proxy.service")
    return parser


def env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines, as systemd's EnvironmentFile and compose's env_file read them."""
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#"))
    return {name.strip(): value.strip() for name, value in pairs}


def installed(tmp_path: Path, redis_url: str) -> tuple[list[str], dict[str, str], Path]:
    """The unit's ExecStart, environment and working folder, with its install paths mapped
    into tmp_path as the header's install steps lay them out (``/opt/izzi`` the venv,
    ``/etc/izzi`` a copy of ``config/``, ``/etc/izzi/env`` the filled-in env.example)."""
    service = unit()["Service"]
    etc = tmp_path / "etc/izzi"
    shutil.copytree(ROOT / "config", etc)
    env = env_file(DEPLOY / "env.example")
    assert {"IZZI_ADMIN_TOKEN", "IZZI_SESSION_SECRET"} <= set(env)
    env.update(IZZI_ADMIN_TOKEN="deploy-test-admin-token", IZZI_SESSION_SECRET="s" * 40,
               IZZI_REDIS_URL=redis_url, IZZI_PORT=str(free_port()))  # fmt: skip
    (etc / "env").write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    assert service["EnvironmentFile"] == "/etc/izzi/env"
    work = tmp_path / "var/lib/izzi"
    work.mkdir(parents=True)
    assert service["WorkingDirectory"] == service["ReadWritePaths"] == "/var/lib/izzi"
    argv = shlex.split(service["ExecStart"])
    assert argv[0] == "/opt/izzi/bin/izzi-proxy"
    argv[0] = str(Path(sys.executable).with_name("izzi-proxy"))
    argv = [a.replace("/etc/izzi", str(etc)) for a in argv]
    environ = {"PATH": os.environ["PATH"], **env_file(etc / "env")}
    return argv, environ, work


async def ready(url: str, process: subprocess.Popen) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(400):
            assert process.poll() is None, f"the gateway exited with {process.returncode}"
            try:
                async with session.get(url + "/readyz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError("the gateway did not get ready")


async def test_the_systemd_unit_starts_reloads_and_stops_the_gateway(tmp_path: Path) -> None:
    redis = RedisServer(tmp_path)
    await redis.start()
    argv, environ, work = installed(tmp_path, redis.url)
    url = f"http://127.0.0.1:{environ['IZZI_PORT']}"
    log = tmp_path / "gateway.log"
    with log.open("w") as stderr:
        process = subprocess.Popen(argv, env=environ, cwd=work, stderr=stderr)
    try:
        await ready(url, process)
        headers = {"authorization": f"Bearer {environ['IZZI_ADMIN_TOKEN']}"}
        async with (
            aiohttp.ClientSession() as session,
            session.post(url + "/admin/accounts", json={"name": "acme"}, headers=headers) as resp,
        ):
            assert resp.status == 201, await resp.text()  # the env file's admin token
        # the ledger's default (sqlite:///data/…) lands in the unit's WorkingDirectory
        assert list(work.glob("data/*.sqlite3"))
        workers = children(process.pid)
        assert len(workers) == (os.cpu_count() or 1)  # limits in Redis: a supervisor, a worker per core

        reload = shlex.split(unit()["Service"]["ExecReload"].replace("$MAINPID", str(process.pid)))
        assert subprocess.run(reload).returncode == 0
        for _ in range(300):
            now = children(process.pid)
            if now and not now & workers and len(now) == len(workers):
                break
            await asyncio.sleep(0.05)
        assert not children(process.pid) & workers, "the reload did not replace the workers"
        await ready(url, process)

        service = unit()["Service"]
        assert (service["KillSignal"], service["KillMode"]) == ("SIGTERM", "mixed")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=float(service["TimeoutStopSec"])) == 0
        assert "Traceback" not in log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        redis.stop()


def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze is not installed (Debian: apt-get install systemd)")
    text = (DEPLOY / "izzi-proxy.service").read_text()
    # verify checks that the command exists: point it at this checkout's
    mapped = tmp_path / "izzi-proxy.service"
    mapped.write_text(text.replace("/opt/izzi/bin/izzi-proxy", str(Path(sys.executable).with_name("izzi-proxy"))))
    result = subprocess.run([analyze, "verify", str(mapped)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_the_compose_file_runs_the_gateway_on_its_redis_and_postgres() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"gateway", "redis", "postgres"}
    gateway = services["gateway"]
    assert (DEPLOY / gateway["build"] / "Dockerfile").is_file()
    assert all(port.startswith("127.0.0.1:") for port in gateway["ports"])  # behind the TLS proxy
    for name, needs in gateway["depends_on"].items():
        assert needs == {"condition": "service_healthy"} and "healthcheck" in services[name]
    # the URLs name the other services, and the config reads them from these variables
    env = gateway["environment"]
    assert "@postgres:5432/" in env["IZZI_DATABASE_URL"] and env["IZZI_REDIS_URL"].startswith("redis://redis:")
    substituted = {k: re.sub(r"\$\{[^}]+\}", "pw", v) for k, v in env.items()}
    config = load_config(ROOT / "config/izzi.toml", env=substituted)
    assert config.storage.database_url == substituted["IZZI_DATABASE_URL"]
    assert config.storage.limiter_url == substituted["IZZI_REDIS_URL"]
    # every variable compose requires is in the example env file it tells the operator to fill
    required = set(re.findall(r"\$\{(\w+):\?", (DEPLOY / "compose.yaml").read_text()))
    assert required and required <= set(env_file(DEPLOY / "env.example"))
    assert gateway["env_file"] == ".env" and ".env" in (ROOT / ".gitignore").read_text().split()
    # the stop waits for the gateway's own: its streams' time, the grace and the drain
    assert int(gateway["stop_grace_period"].rstrip("s")) > config.server.shutdown_timeout_s + 6
    assert services["postgres"]["volumes"], "the ledger's data outlives the container"


def test_the_image_recipe_copies_and_installs_what_exists(tmp_path: Path) -> None:
    text = (ROOT / "Dockerfile").read_text()
    lines = text.replace("\\\n", " ").splitlines()  # continued lines joined
    instructions = [tuple(line.split(None, 1)) for line in lines if line.strip() and not line.startswith("#")]
    stages = [arg for op, arg in instructions if op == "FROM"]
    assert all("-slim" in stage for stage in stages)
    assert [arg for op, arg in instructions if op == "USER"] == ["izzi"]
    for op, arg in instructions:
        if op == "COPY" and "--from" not in arg:
            *sources, _ = arg.split()
            assert all((ROOT / s).exists() for s in sources), arg
    (install,) = [arg for op, arg in instructions if op == "RUN" and "pip install" in arg]
    for path in install.split("pip install", 1)[1].split():
        if not path.startswith("-"):
            assert (ROOT / path / "pyproject.toml").is_file(), path
    assert {p.name for p in (ROOT / "plugins").iterdir() if (p / "pyproject.toml").is_file()} <= {
        Path(p).name for p in install.split() if p.startswith("plugins/")
    }
    cmd = [arg for op, arg in instructions if op == "CMD"][-1]
    assert '"/etc/izzi/izzi.toml"' in cmd and "COPY config /etc/izzi" in text
    assert "/readyz" in next(arg for op, arg in instructions if op == "HEALTHCHECK")
    # the build context leaves out what is not the package's
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".git", "data"} <= {entry.strip("/") for entry in ignored}
    # a non-editable install (what the image makes) carries the dashboard's files
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("izzi_proxy-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for needed in ("izzi_proxy/dashboard/templates/base.html", "izzi_proxy/dashboard/static/dashboard.css",
                   "izzi_proxy/py.typed"):  # fmt: skip
        assert needed in names
