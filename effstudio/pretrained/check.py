"""The exactness check: an imported model against the reference implementation, ``transformers``.

``transformers`` is a test dependency, not a runtime one: it is imported here only when
a check is asked for, and its absence is one clear line. The reference model is read
from the same folder (local files only, nothing downloaded), both run in float32 on the
same padded batch (rows of different lengths, padding on the right), and each output is
compared at the real positions only (padding rows' values are not defined alike: RoBERTa
gives padding its own position):

- ``hidden``: the final hidden states (the base model's last_hidden_state);
- ``logits``: the reference class's logits: sequence classification (B, C), or a language
  model's token logits (B, N, V) against the imported token head.

Only outputs of heads the import kept are compared (a new head has no reference).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from effstudio.config import ConfigError
from effstudio.pretrained.hf_folder import folder_of, read_json
from effstudio.pretrained.importer import Imported

TOLERANCE = 1e-4  # float32: the bound on the largest absolute difference


@dataclass(frozen=True)
class Difference:
    output: str  # "hidden", "logits"
    shape: tuple[int, ...]
    max_abs: float

    @property
    def exact(self) -> bool:
        return self.max_abs <= TOLERANCE


def load_reference(path: Path) -> torch.nn.Module:
    """The folder's model as ``transformers`` builds it (its architectures[0] class), float32, eval, eager
    attention; ConfigError with one line when transformers is not installed."""
    try:
        import transformers
    except ImportError:
        raise ConfigError("check", "the exactness check compares with the transformers library, which is not "
                                   "installed (pip install 'transformers>=4.44')") from None
    transformers.utils.logging.disable_progress_bar()  # one line per output is what the check prints
    folder, _ = folder_of(path)
    config = read_json(folder / "config.json", "config.json")
    names = config.get("architectures") or []
    cls = getattr(transformers, names[0], None) if names and isinstance(names[0], str) else None
    cls = cls if cls is not None else transformers.AutoModel
    model = cls.from_pretrained(str(folder), local_files_only=True, torch_dtype=torch.float32,
                                attn_implementation="eager")
    return model.eval()


def sample_batch(imported: Imported, reference: torch.nn.Module, *, batch: int = 3, length: int = 16,
                 seed: int = 0) -> tuple[dict[str, torch.Tensor], tuple[torch.Tensor, torch.Tensor | None]]:
    """(the reference's inputs, the imported model's (inputs, mask)) for one random padded batch."""
    generator = torch.Generator().manual_seed(seed)
    spec_config = imported.config.task
    if imported.config.task_name == "imagefolder":
        size = spec_config.image_size
        images = torch.rand(batch, 3, size, size, generator=generator)  # [0, 1], as effstudio's tasks give
        mean, std = imported_normalisation(imported)
        return {"pixel_values": (images - mean) / std}, (images, None)
    hf_config = reference.config
    rows = hf_config.vocab_size
    length = min(length, spec_config.max_length)
    pad = hf_config.pad_token_id if isinstance(hf_config.pad_token_id, int) else 0
    ids = torch.randint(0, rows - 1, (batch, length), generator=generator)
    ids = ids + (ids >= pad).long()  # never the padding id inside the text (RoBERTa and GPT-2 read it as padding)
    lengths = [max(2, length - (length * i) // batch) for i in range(batch)]  # full, then shorter rows
    mask = torch.arange(length)[None, :] < torch.tensor(lengths)[:, None]  # (B, N)
    ids = ids.masked_fill(~mask, pad)
    return {"input_ids": ids, "attention_mask": mask.long()}, (ids, mask)


def imported_normalisation(imported: Imported) -> tuple[torch.Tensor, torch.Tensor]:
    """The per-channel (mean, std) the import folded into the patch projection, as (1, C, 1, 1) tensors."""
    mean, std = imported.image_normalisation
    return torch.tensor(mean)[None, :, None, None], torch.tensor(std)[None, :, None, None]


@torch.no_grad()
def compare(imported: Imported, reference: torch.nn.Module, *, batch: int = 3, length: int = 16,
            seed: int = 0) -> list[Difference]:
    """The largest absolute difference of each output on one random padded batch."""
    theirs_in, (ours_in, mask) = sample_batch(imported, reference, batch=batch, length=length, seed=seed)
    model = imported.model
    differences = []
    base = reference.base_model(**theirs_in).last_hidden_state  # (B, N, d)
    differences.append(_difference("hidden", base, model.hidden_states(ours_in, mask), mask))
    out = reference(**theirs_in)
    logits = getattr(out, "logits", None)
    if logits is None:
        return differences
    if logits.dim() == 2 and "head" not in imported.new_parts:
        differences.append(_difference("logits", logits, model(ours_in, mask).logits, None))
    elif logits.dim() == 3 and imported.config.model.token_head != "none":
        ours = model.token_logits(ours_in, mask)[..., : logits.shape[-1]]  # rows the import appended left out
        differences.append(_difference("logits", logits, ours, mask))
    return differences


def _difference(name: str, theirs: torch.Tensor, ours: torch.Tensor, real: torch.Tensor | None) -> Difference:
    if theirs.shape != ours.shape:
        raise ValueError(f"{name}: the reference gives shape {tuple(theirs.shape)}, the import "
                         f"{tuple(ours.shape)}")
    gap = (theirs.float() - ours.float()).abs()
    if real is not None:
        gap = gap[real]  # (real positions, ...)
    return Difference(name, tuple(theirs.shape), float(gap.max()))
