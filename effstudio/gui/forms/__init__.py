"""Forms generated from config dataclasses."""
