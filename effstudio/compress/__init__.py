"""Compression lab: prune, quantize, distill, export and compare; every job is a generator of events."""
