"""Attention kinds: one module per mechanism, all with the same call shape."""
