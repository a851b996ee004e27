"""The commands that read a model file, as argument lists: one list for every hostile-input test."""

from __future__ import annotations

from pathlib import Path


def model_file_readers(path: Path, good: Path, out: Path) -> dict[str, list]:
    """Each command that reads a model file, on ``path`` (``good`` a valid checkpoint to compare or diff
    with); everything a command writes goes under ``out``."""
    return {
        "inspect": ["inspect", path, "--no-stats"],
        "inspect --diff": ["inspect", good, "--diff", path, "--no-stats"],
        "train --resume": ["train", "--resume", path, "--steps", "3", "--out", out / "resumed", "--no-record"],
        "train --init": ["train", "--init", path, "--steps", "1", "--out", out / "run", "--no-record"],
        "prune": ["prune", path, "--method", "magnitude", "--amount", "0.5", "--out", out / "p.safetensors"],
        "quantize": ["quantize", path, "--method", "fp16", "--out", out / "q.safetensors"],
        "export": ["export", "onnx", path, "--out", out / "m.onnx"],
        "compare": ["compare", good, path],
        "distill --teacher": ["distill", "--teacher", path, "--student-model", "transformer", "--steps", "1",
                              "--out", out / "d.safetensors"],
        "evaluate": ["evaluate", path, "--factors", "1", "--no-robustness", "--out", out / "evaluation"],
        "drift": ["drift", path, "--reference", "val", "--current", "test"],
    }


READERS = list(model_file_readers(Path("f"), Path("g"), Path("o")))
