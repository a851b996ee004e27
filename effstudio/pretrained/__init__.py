"""Pretrained models: Hugging Face folders imported exactly onto effstudio's own model types, and converted into
efficient ones (other attention kinds, longer positions)."""
