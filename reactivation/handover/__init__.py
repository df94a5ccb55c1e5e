"""The hand-over to the salon's AI chat admin through Redis: what is written and read (`admin_handover`), the key
names (`keys`), and the Lua scripts that write atomically (`scripts`, with the `lua/*.lua` files)."""
