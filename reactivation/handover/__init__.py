"""The hand-over to the salon's AI chat admin through Redis."""
