"""The provider registry: entry points, overrides, unknown kinds, broken plugins."""

from __future__ import annotations

import logging

import aiohttp
import pytest

from izzi_proxy.config import DEFAULT_CONFIG, ConfigError, load_config
from izzi_proxy.providers import Provider, Registry, UpstreamUnavailable, build_upstreams


async def test_bundled_plugins_are_found_by_entry_point() -> None:
    installed = Registry().installed()
    assert {"openai", "mock"} <= set(installed)
    cls = Registry().load("openai")
    assert cls.kind == "openai" and callable(cls.from_config)


async def test_bundled_config_builds_with_unset_keys_reported(caplog) -> None:
    config = load_config(DEFAULT_CONFIG, env={"OPENAI_API_KEY": "sk-x"})
    async with aiohttp.ClientSession() as session:
        with caplog.at_level(logging.WARNING):
            built = build_upstreams(config, session, Registry())
    assert set(built.providers) == {"openai", "mock"}
    assert isinstance(built.providers["openai"], Provider)
    assert built.unavailable["anthropic"] == "set ANTHROPIC_API_KEY to use it"
    assert "ANTHROPIC_API_KEY" in caplog.text


async def test_allowlist_variable(monkeypatch) -> None:
    monkeypatch.setenv("IZZI_PROVIDERS", "mock")
    assert set(Registry().installed()) == {"mock"}
    config = load_config(DEFAULT_CONFIG, env={})
    async with aiohttp.ClientSession() as session:
        with pytest.raises(ConfigError) as caught:
            build_upstreams(config, session, Registry())
    assert "installed kinds: mock" in str(caught.value)


async def test_unknown_kind_lists_installed(tmp_path) -> None:
    (tmp_path / "models.toml").write_text('[models.m]\nname="m"\ntier="budget"\ninput=1\noutput=1\nroutes=["x:m"]\n')
    (tmp_path / "izzi.toml").write_text('[upstreams.x]\nkind = "nonesuch"\n')
    config = load_config(tmp_path / "izzi.toml", env={})
    async with aiohttp.ClientSession() as session:
        with pytest.raises(ConfigError) as caught:
            build_upstreams(config, session, Registry())
    assert caught.value.key == "upstreams.x.kind"
    assert "'nonesuch'" in caught.value.problem and "mock" in caught.value.problem and "openai" in caught.value.problem


class _Unavailable:
    kind = "unavailable"
    wire_formats = frozenset({"openai_chat"})

    @classmethod
    def from_config(cls, upstream, session):
        raise UpstreamUnavailable("needs a licence")


class _Buggy(_Unavailable):
    @classmethod
    def from_config(cls, upstream, session):
        raise ZeroDivisionError("plugin bug")


async def test_plugin_failures_leave_the_rest_running(tmp_path, caplog) -> None:
    (tmp_path / "models.toml").write_text('[models.m]\nname="m"\ntier="budget"\ninput=1\noutput=1\nroutes=["a:m"]\n')
    (tmp_path / "izzi.toml").write_text(
        '[upstreams.a]\nkind = "unavailable"\n[upstreams.b]\nkind = "buggy"\n[upstreams.c]\nkind = "mock"\n'
    )
    config = load_config(tmp_path / "izzi.toml", env={})
    registry = Registry()
    with registry.override({"unavailable": _Unavailable, "buggy": _Buggy}):
        assert {"unavailable", "buggy", "mock"} <= set(registry.installed())
        async with aiohttp.ClientSession() as session:
            built = build_upstreams(config, session, registry)
    assert set(registry.installed()).isdisjoint({"unavailable", "buggy"})  # the override undid itself
    assert set(built.providers) == {"c"}
    assert built.unavailable["a"] == "needs a licence"
    assert "plugin bug" in built.unavailable["b"]
    assert "plugin bug" in caplog.text


async def test_plugin_options_are_validated_by_the_plugin(tmp_path) -> None:
    (tmp_path / "models.toml").write_text('[models.m]\nname="m"\ntier="budget"\ninput=1\noutput=1\nroutes=["a:m"]\n')
    (tmp_path / "izzi.toml").write_text('[upstreams.a]\nkind = "mock"\nchunkz = 3\n')
    config = load_config(tmp_path / "izzi.toml", env={})
    async with aiohttp.ClientSession() as session:
        with pytest.raises(ConfigError) as caught:
            build_upstreams(config, session, Registry())
    assert caught.value.key == "chunkz" and "unknown option" in caught.value.problem
