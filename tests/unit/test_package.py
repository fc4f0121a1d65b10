"""The package's public names: ``__all__`` is complete and every name in it exists."""

from __future__ import annotations

import types

import izzi_proxy


def test_all_names_exist() -> None:
    for name in izzi_proxy.__all__:
        assert hasattr(izzi_proxy, name), name


def test_all_lists_every_public_name() -> None:
    public = {
        name
        for name, value in vars(izzi_proxy).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType) and name != "annotations"
    }
    assert public == set(izzi_proxy.__all__) - {"__version__"}
