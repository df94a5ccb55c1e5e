"""When to contact whom: the win-back steps, the interval waterfall, the averages job, the send window."""
