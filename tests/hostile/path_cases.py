"""Hostile files of the path and size class: run configs, checkpoint headers and run folders that
name paths outside their own folder, or models too large for any machine.

Each ``make_<case>(folder)`` writes its files under ``folder`` (a fresh, empty folder) and returns
the file (or run folder) to hand to an entry point. Conventions shared with the tests:

- ``victim(folder)`` is a file outside the place the hostile file may write: it must stay unchanged;
- ``secret(folder)`` is a readable text outside the config's folder that a hostile config tries to
  train on;
- ``run_folder(folder)`` is the run folder to train into (``train --out``); some cases prepare it
  (a symbolic link inside it), so that the check meets the folder as it will be.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import safetensors.torch
import torch

from effstudio.engine.checkpoint import checkpoint_metadata
from effstudio.engine.run_config import RunConfig
from tests.hostile.cases import Case, declare_into

CASES: list[Case] = []
case = declare_into(CASES)

TINY = {"model.d_model": 16, "model.layers": 1, "model.heads": 2, "task.train_size": 64, "task.val_size": 16,
        "task.test_size": 16, "task.max_length": 8, "train.steps": 2, "train.batch_size": 8,
        "train.eval_every": 2, "train.attention_every": 0, "train.warmup_steps": 1, "train.device": "cpu"}
HEAD = """[model]
type = "transformer"
d_model = 16
layers = 1
heads = 2

[task]
name = "copy"
train_size = 64
val_size = 16
test_size = 16
max_length = 8

[train]
steps = 2
batch_size = 8
eval_every = 2
attention_every = 0
warmup_steps = 1
device = "cpu"
"""
CHARLM_HEAD = """[model]
type = "transformer"
d_model = 16
layers = 1
heads = 2

[task]
name = "charlm"
segment_length = 16
path = {path}

[train]
steps = 2
batch_size = 4
eval_every = 2
attention_every = 0
warmup_steps = 1
device = "cpu"
"""
VICTIM_TEXT = "precious data that no config may touch\n"
SECRET_TEXT = "a private text outside the config's folder. " * 40


def victim(folder: Path) -> Path:
    return folder / "VICTIM.txt"


def secret(folder: Path) -> Path:
    return folder / "private" / "secret.txt"


def run_folder(folder: Path) -> Path:
    return folder / "runs" / "run"


def _victim_and_config(folder: Path, compress: str) -> Path:
    victim(folder).write_text(VICTIM_TEXT, encoding="utf-8")
    config = folder / "shared" / "run.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(HEAD + "\n[[compress]]\n" + compress, encoding="utf-8")
    return config


def _escape_to(target: Path) -> str:
    """A relative path that climbs to the root from any folder and down to ``target``."""
    return "../" * 40 + str(target.resolve()).lstrip("/")


# ------------------------------------------------------------------ outputs
@case("toml")
def make_out_parent(folder: Path) -> Path:
    """``[[compress]] out`` climbing out of the run folder with ``..`` onto the victim."""
    return _victim_and_config(folder, f'method = "quantize"\nquantize = "fp16"\nout = "{_escape_to(victim(folder))}"\n')


@case("toml")
def make_out_absolute(folder: Path) -> Path:
    """``[[compress]] out`` naming the victim by its absolute path."""
    return _victim_and_config(folder, f'method = "quantize"\nquantize = "fp16"\nout = "{victim(folder).resolve()}"\n')


@case("toml")
def make_out_home(folder: Path) -> Path:
    """``[[compress]] out`` starting with ``~`` (the user's home)."""
    return _victim_and_config(folder, 'method = "export"\nout = "~/effstudio-hostile-export.onnx"\n')


@case("toml")
def make_out_symlink(folder: Path) -> Path:
    """``[[compress]] out`` through a symbolic link in the run folder that leads to the victim's folder."""
    config = _victim_and_config(folder, 'method = "quantize"\nquantize = "fp16"\nout = "link/VICTIM.txt"\n')
    run_folder(folder).mkdir(parents=True)
    (run_folder(folder) / "link").symlink_to(folder.resolve(), target_is_directory=True)
    return config


@case("toml")
def make_out_symlinked_file(folder: Path) -> Path:
    """``[[compress]] out`` naming a file in the run folder that is a symbolic link to the victim."""
    config = _victim_and_config(folder, 'method = "quantize"\nquantize = "fp16"\nout = "half.safetensors"\n')
    run_folder(folder).mkdir(parents=True)
    (run_folder(folder) / "half.safetensors").symlink_to(victim(folder).resolve())
    return config


@case("toml")
def make_out_trained_state(folder: Path) -> Path:
    """``[[compress]] out`` naming the trained checkpoint's training state."""
    return _victim_and_config(folder, 'method = "prune"\namount = 0.5\nout = "checkpoint.state.pt"\n')


@case("toml")
def make_out_trained_spelling(folder: Path) -> Path:
    """``[[compress]] out`` naming the trained checkpoint by another spelling (``sub/../``)."""
    return _victim_and_config(folder, 'method = "quantize"\nquantize = "fp16"\nout = "sub/../checkpoint.safetensors"\n')


@case("toml")
def make_out_trained_alias(folder: Path) -> Path:
    """``[[compress]] out`` naming a link in the run folder to the trained checkpoint."""
    config = _victim_and_config(folder, 'method = "quantize"\nquantize = "fp16"\nout = "alias.safetensors"\n')
    run_folder(folder).mkdir(parents=True)
    (run_folder(folder) / "alias.safetensors").symlink_to("checkpoint.safetensors")
    return config


@case("toml")
def make_out_event_log(folder: Path) -> Path:
    """``[[compress]] out`` naming the run's own event log."""
    return _victim_and_config(folder, 'method = "prune"\namount = 0.5\nout = "./events.jsonl"\n')


@case("toml")
def make_distill_set_task_path(folder: Path) -> Path:
    """A distillation step whose student settings point the task at a file outside the config's folder."""
    secret(folder).parent.mkdir(parents=True, exist_ok=True)
    secret(folder).write_text(SECRET_TEXT, encoding="utf-8")
    return _victim_and_config(folder, f'method = "distill"\nsteps = 1\nset = ["task.path={secret(folder).resolve()}"]\n')


# -------------------------------------------------------------------- inputs
def _secret_config(folder: Path, path_value: str) -> Path:
    secret(folder).parent.mkdir(parents=True, exist_ok=True)
    secret(folder).write_text(SECRET_TEXT, encoding="utf-8")
    config = folder / "shared" / "run.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(CHARLM_HEAD.format(path=json.dumps(path_value)), encoding="utf-8")
    return config


@case("toml")
def make_charlm_absolute(folder: Path) -> Path:
    """A charlm ``task.path`` naming a text outside the config's folder by its absolute path."""
    return _secret_config(folder, str(secret(folder).resolve()))


@case("toml")
def make_charlm_parent(folder: Path) -> Path:
    """A charlm ``task.path`` climbing out of the config's folder with ``..``."""
    return _secret_config(folder, "../private/secret.txt")


@case("toml")
def make_charlm_symlink(folder: Path) -> Path:
    """A charlm ``task.path`` naming a link beside the config that leads outside its folder."""
    config = _secret_config(folder, "notes.txt")
    (config.parent / "notes.txt").symlink_to(secret(folder).resolve())
    return config


@case("toml")
def make_imagefolder_absolute(folder: Path) -> Path:
    """An imagefolder ``task.folder`` naming a folder outside the config's folder."""
    (folder / "private").mkdir(parents=True, exist_ok=True)
    config = folder / "shared" / "run.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(f'[model]\ntype = "vit"\n[task]\nname = "imagefolder"\nfolder = "{(folder / "private").resolve()}"\n',
                      encoding="utf-8")
    return config


def _textclass_config(folder: Path, field: str) -> Path:
    """A textclass config whose data sits beside it and whose ``field`` names the secret outside its folder."""
    secret(folder).parent.mkdir(parents=True, exist_ok=True)
    secret(folder).write_text(SECRET_TEXT, encoding="utf-8")
    config = folder / "shared" / "run.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    (config.parent / "data.csv").write_text("text,label\nan example,a\nanother one,b\n", encoding="utf-8")
    extra = 'tokenizer = "file"\n' if field == "tokenizer_path" else ""
    config.write_text(f'[model]\ntype = "transformer"\n[task]\nname = "textclass"\npath = "data.csv"\n{extra}'
                      f"{field} = {json.dumps(str(secret(folder).resolve()))}\n", encoding="utf-8")
    return config


@case("toml")
def make_textclass_val_path(folder: Path) -> Path:
    """A textclass ``task.val_path`` naming a file outside the config's folder."""
    return _textclass_config(folder, "val_path")


@case("toml")
def make_textclass_tokenizer_path(folder: Path) -> Path:
    """A textclass ``task.tokenizer_path`` naming a file outside the config's folder."""
    return _textclass_config(folder, "tokenizer_path")


def _header_checkpoint(path: Path, config: dict) -> Path:
    """A tiny safetensors file whose effstudio header claims ``config``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = checkpoint_metadata(RunConfig.create("transformer", "copy", TINY), 1)
    metadata["config"] = json.dumps(config)
    safetensors.torch.save_file({"w": torch.zeros(2)}, str(path), metadata=metadata)
    return path


@case("checkpoint")
def make_header_charlm_outside(folder: Path) -> Path:
    """A checkpoint whose header's charlm ``task.path`` leads outside the checkpoint's folder."""
    secret(folder).parent.mkdir(parents=True, exist_ok=True)
    secret(folder).write_text(SECRET_TEXT, encoding="utf-8")
    config = RunConfig.create("transformer", "charlm", {"model.d_model": 16, "model.layers": 1,
                                                        "model.heads": 2}).to_dict()
    config["task"]["path"] = "../private/secret.txt"
    return _header_checkpoint(folder / "shared" / "checkpoint.safetensors", config)


# ---------------------------------------------------------------------- sizes
def _tiny_dict(**model: int) -> dict:
    config = RunConfig.create("transformer", "copy", TINY).to_dict()
    config["model"].update(model)
    return config


@case("checkpoint")
def make_header_huge_width(folder: Path) -> Path:
    """A 40-byte checkpoint whose header claims d_model = 1,000,000 (about 4 TB of weights)."""
    return _header_checkpoint(folder / "huge.safetensors", _tiny_dict(d_model=1_000_000, heads=4))


@case("checkpoint")
def make_header_wide_and_deep(folder: Path) -> Path:
    """A checkpoint whose header claims 48 layers of width 65,536."""
    return _header_checkpoint(folder / "deep.safetensors", _tiny_dict(d_model=65_536, layers=48, heads=4))


@case("checkpoint")
def make_header_huge_length(folder: Path) -> Path:
    """A checkpoint whose header claims a task length far beyond the setting's range."""
    config = _tiny_dict()
    config["task"]["max_length"] = 10**9
    return _header_checkpoint(folder / "long.safetensors", config)


@case("toml")
def make_toml_huge_width(folder: Path) -> Path:
    path = folder / "huge.toml"
    path.write_text(HEAD.replace("d_model = 16", "d_model = 1000000").replace("heads = 2", "heads = 4"), encoding="utf-8")
    return path


@case("toml")
def make_toml_xl_memory(folder: Path) -> Path:
    """Transformer-XL keeping 8192 states of memory per layer for each of 4096 sequences: small weights,
    terabytes of memory that an estimate from the task's length alone does not see."""
    path = folder / "xl_memory.toml"
    path.write_text(HEAD.replace('type = "transformer"', 'type = "transformer_xl"')
                    .replace("heads = 2", "heads = 2\nmem_len = 8192\neval_mem_len = 65536")
                    .replace("batch_size = 8", "batch_size = 4096"), encoding="utf-8")
    return path


@case("toml")
def make_toml_performer_features(folder: Path) -> Path:
    """Performer with 65536 random features per head: each token keeps features, not widths."""
    path = folder / "performer_features.toml"
    text = HEAD.replace("heads = 2", 'heads = 2\nattention = "performer"').replace("max_length = 8", "max_length = 256")
    path.write_text(text.replace("batch_size = 8", "batch_size = 4096") + "\n[attention]\nfeatures = 65536\n",
                    encoding="utf-8")
    return path


@case("toml")
def make_toml_wide_and_deep(folder: Path) -> Path:
    path = folder / "deep.toml"
    path.write_text(HEAD.replace("d_model = 16", "d_model = 65536").replace("layers = 1", "layers = 48"),
                    encoding="utf-8")
    return path


# ---------------------------------------------------------------- run folders
def _run_folder(folder: Path, events: list[dict]) -> Path:
    victim(folder).write_text(VICTIM_TEXT, encoding="utf-8")
    run = folder / "imported"
    run.mkdir(parents=True)
    (run / "config.toml").write_text(HEAD, encoding="utf-8")
    start = {"event": "start", "run_dir": "/cluster/runs/x", "device": "cpu", "params": 10, "total_steps": 2,
             "start_step": 0}
    step = {"event": "step", "step": 1, "total_steps": 2, "loss": 1.0, "lr": 1e-3, "tokens_per_s": 1.0,
            "rss_mb": 100.0, "grad_norm": 1.0, "elapsed_s": 0.1}
    lines = [start, step, *events]
    (run / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in lines), encoding="utf-8")
    return run


@case("run_folder")
def make_import_result_absolute(folder: Path) -> Path:
    """An imported run whose compression result names the victim by its absolute path."""
    return _run_folder(folder, [{"event": "result", "method": "fp16", "path": str(victim(folder).resolve())}])


@case("run_folder")
def make_import_checkpoint_parent(folder: Path) -> Path:
    """An imported run whose checkpoint event climbs out of the folder with ``..``."""
    return _run_folder(folder, [{"event": "checkpoint", "step": 1, "path": "../VICTIM.txt"}])


@case("run_folder")
def make_import_artifact_symlink(folder: Path) -> Path:
    """An imported run whose result is a link in its folder that leads to the victim."""
    run = _run_folder(folder, [{"event": "result", "method": "fp16", "path": "/cluster/runs/x/half.safetensors"}])
    (run / "half.safetensors").symlink_to(victim(folder).resolve())
    return run


@case("run_folder")
def make_import_charlm_outside(folder: Path) -> Path:
    """An imported run whose config.toml trains on a text outside the folder."""
    run = _run_folder(folder, [])
    secret(folder).parent.mkdir(parents=True, exist_ok=True)
    secret(folder).write_text(SECRET_TEXT, encoding="utf-8")
    (run / "config.toml").write_text(CHARLM_HEAD.format(path=json.dumps("../private/secret.txt")), encoding="utf-8")
    return run


# ------------------------------------------------------------ outputs that are not files, inputs that never end
@case("toml")
def make_out_existing_folder(folder: Path) -> Path:
    """``[[compress]] out`` naming a folder that exists in the run folder: the write would fail after training."""
    config = _victim_and_config(folder, 'method = "quantize"\nquantize = "fp16"\nout = "exports"\n')
    (run_folder(folder) / "exports").mkdir(parents=True)
    return config


@case("toml")
def make_out_trailing_slash(folder: Path) -> Path:
    return _victim_and_config(folder, 'method = "quantize"\nquantize = "fp16"\nout = "exports/"\n')


@case("toml")
def make_out_run_folder_itself(folder: Path) -> Path:
    return _victim_and_config(folder, 'method = "quantize"\nquantize = "fp16"\nout = "."\n')


@case("toml")
def make_out_nul(folder: Path) -> Path:
    return _victim_and_config(folder, 'method = "quantize"\nquantize = "fp16"\nout = "half\\u0000.safetensors"\n')


@case("toml")
def make_out_long_name(folder: Path) -> Path:
    """A name of 300 bytes: no common file system takes it, and the write would fail after training."""
    return _victim_and_config(folder, f'method = "quantize"\nquantize = "fp16"\nout = "{"h" * 300}.safetensors"\n')


@case("toml")
def make_charlm_fifo(folder: Path) -> Path:
    """A charlm ``task.path`` naming a pipe beside the config: inside its folder, and read forever."""
    config = folder / "shared" / "run.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(config.parent / "notes.txt")
    config.write_text(CHARLM_HEAD.format(path='"notes.txt"'), encoding="utf-8")
    return config


@case("toml")
def make_charlm_device_link(folder: Path) -> Path:
    """A charlm ``task.path`` naming a link beside the config that leads to /dev/zero."""
    config = folder / "shared" / "run.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    (config.parent / "notes.txt").symlink_to("/dev/zero")
    config.write_text(CHARLM_HEAD.format(path='"notes.txt"'), encoding="utf-8")
    return config


@case("toml")
def make_charlm_nul(folder: Path) -> Path:
    config = folder / "shared" / "run.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(CHARLM_HEAD.format(path='"notes\\u0000.txt"'), encoding="utf-8")
    return config


@case("toml")
def make_out_lock_file(folder: Path) -> Path:
    """A step that would write over the run folder's lock (or any hidden file: unfinished saves)."""
    return _victim_and_config(folder, 'method = "quantize"\nquantize = "fp16"\nout = ".effstudio.lock"\n')


@case("toml")
def make_out_other_case(folder: Path) -> Path:
    """A step whose output is the trained checkpoint in other letters (the same file where case is ignored)."""
    return _victim_and_config(folder, 'method = "quantize"\nquantize = "fp16"\nout = "Checkpoint.safetensors"\n')


@case("toml")
def make_charlm_symlink_loop(folder: Path) -> Path:
    """A config whose charlm text is a symbolic link loop."""
    config = folder / "shared" / "run.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    (config.parent / "loop").symlink_to("loop")
    config.write_text(CHARLM_HEAD.format(path=json.dumps("loop/text.txt")), encoding="utf-8")
    return config
