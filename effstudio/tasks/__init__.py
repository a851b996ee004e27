"""Tasks: data sets generated locally (ListOps, copy) or read from the user's files."""
