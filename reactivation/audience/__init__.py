"""Who is contacted: the set-based due selection, the hold-out group, the preview of a run."""
