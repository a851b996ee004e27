"""Hugging Face checkpoints mapped onto effstudio's own model types, one module per family.

Each family module offers ``convert(config, tensors) -> Converted``: from a
config.json (a dict) and the folder's tensors it gives the effstudio model type,
its settings and a state dict in effstudio's names, naming the Hugging Face
tensor behind every entry so that a missing or misshapen one is reported by the
name the user's file has. :data:`FAMILIES` maps config.json's ``model_type``
to its module's converter. Reading the folder and building the model is
effstudio.pretrained's work; this package only knows names, shapes and layouts.
"""

from __future__ import annotations

from collections.abc import Callable

from effstudio.models.hf import albert, bert, distilbert, gpt2, vit
from effstudio.models.hf.base import Converted, Tensors

FAMILIES: dict[str, Callable[[dict, Tensors], Converted]] = {
    "bert": bert.convert,
    "roberta": bert.convert,
    "electra": bert.convert,
    "distilbert": distilbert.convert,
    "albert": albert.convert,
    "gpt2": gpt2.convert,
    "vit": vit.convert,
    "deit": vit.convert,
}
