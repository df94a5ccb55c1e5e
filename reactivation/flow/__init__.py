"""The daily run: planning, claiming, the per-client chain's steps and the sweep of stuck rows."""
