"""Architectures built from attention kinds and blocks."""
