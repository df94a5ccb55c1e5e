"""The hand-over's Lua scripts: read from the package's own files, and shipped with it."""

from __future__ import annotations

import tomllib
from pathlib import Path

import fakeredis

import reactivation
from reactivation.handover.scripts import CLEAR_SCRIPT, READ_SCRIPT, SAVE_SCRIPT

PACKAGE = Path(reactivation.__file__).parent
LUA = PACKAGE / "handover" / "lua"


def test_each_script_is_its_file_and_the_splice_comes_first() -> None:
    splice = (LUA / "splice.lua").read_text(encoding="utf-8")
    assert SAVE_SCRIPT.source == splice + (LUA / "save.lua").read_text(encoding="utf-8")
    assert CLEAR_SCRIPT.source == splice + (LUA / "clear.lua").read_text(encoding="utf-8")
    assert READ_SCRIPT.source == (LUA / "read.lua").read_text(encoding="utf-8")
    assert {path.name for path in LUA.iterdir()} == {"splice.lua", "save.lua", "clear.lua", "read.lua"}


def test_every_lua_file_is_in_the_packages_data() -> None:
    # given the globs pyproject.toml ships with the package
    pyproject = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text(encoding="utf-8"))
    globs = pyproject["tool"]["setuptools"]["package-data"]["reactivation"]
    shipped = {path for pattern in globs for path in PACKAGE.glob(pattern)}
    # then each script file is among them, so an installed (non-editable) package can load it at import
    assert set(PACKAGE.rglob("*.lua")) <= shipped


def test_a_script_runs_under_the_sha_redis_knows_it_by() -> None:
    # given a server that has never seen the script
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)
    assert client.script_exists(READ_SCRIPT.sha) == [False]
    client.set("k", "é")
    # when it runs, it is loaded once and answers; the server now knows it by our SHA-1
    assert READ_SCRIPT(client, ["k"], []) == ["string", "c3a9"]
    assert client.script_exists(READ_SCRIPT.sha) == [True]
    assert READ_SCRIPT(client, ["missing"], []) == ["none", ""]
