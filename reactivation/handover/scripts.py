"""The hand-over's Lua scripts: the files in `lua/`, read once at import, run through redis-py's `register_script`.

redis-py runs a registered script with EVALSHA and, on a server that has not seen it (a new or restarted Redis),
loads it once and runs it again. save.lua and clear.lua start with splice.lua's text, because a Redis script
cannot load another. What each script takes and answers is written at the top of its file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import redis

_LUA = resources.files("reactivation.handover") / "lua"


def _lua(name: str) -> str:
    return (_LUA / f"{name}.lua").read_text(encoding="utf-8")


@dataclass(frozen=True)
class LuaScript:
    """One script's text, run on whichever Redis client is given."""

    name: str
    source: str = field(repr=False)

    @property
    def sha(self) -> str:
        """The SHA-1 that EVALSHA knows the script by."""
        return hashlib.sha1(self.source.encode("utf-8")).hexdigest()

    def __call__(self, client: redis.Redis, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run the script on `client` with KEYS and ARGV."""
        # A registered Script is bound to one client. Registering only hashes the text (no round trip to Redis),
        # so binding on each call is cheap and keeps the module free of clients at import.
        return client.register_script(self.source)(keys=list(keys), args=list(args))


_SPLICE = _lua("splice")

SAVE_SCRIPT = LuaScript("save", _SPLICE + _lua("save"))
CLEAR_SCRIPT = LuaScript("clear", _SPLICE + _lua("clear"))
READ_SCRIPT = LuaScript("read", _lua("read"))
