"""Packaging tests: offscreen Qt (the data and cache folders are tests/conftest.py's)."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
