"""Pretrained models: Hugging Face folders imported exactly onto effstudio's own model types."""
