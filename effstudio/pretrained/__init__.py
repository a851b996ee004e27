"""Pretrained models: Hugging Face import and conversion into efficient models (longer positions, other attention kinds)."""
