"""Hostile values in files, generated at test time: checkpoint headers, run-config TOML, run folders, paths.

Each ``make_<case>(folder)`` writes one hostile input into ``folder`` and returns its path. ``CASES``
lists them as ``(name, make, kind)`` so that a matrix over every entry point can reuse them;
``FIELDS`` says which field (or reason) the one-line message must name for each case.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import safetensors
import safetensors.torch
import tomli_w

from tests.hostile.cases import Case, declare_into

CASES: list[Case] = []
case = declare_into(CASES)

DEEP = 100_000  # the nesting the files used: far past any parser's recursion limit
TINY = {"model.d_model": 16, "model.layers": 1, "model.heads": 2, "model.dropout": 0.0,
        "task.train_size": 64, "task.val_size": 16, "task.test_size": 16, "task.min_length": 8,
        "task.max_length": 24, "train.batch_size": 16, "train.eval_every": 2, "train.warmup_steps": 1,
        "train.device": "cpu", "train.attention_every": 0, "train.steps": 2}


def tiny_config():
    from effstudio.engine.run_config import RunConfig

    return RunConfig.create("transformer", "listops", TINY)


def make_good_checkpoint(folder: Path, name: str = "good.safetensors") -> Path:
    """A valid, untrained effstudio checkpoint (with its training state, so that it can be resumed)."""
    import torch.optim

    from effstudio.engine.build import build_model, build_task
    from effstudio.engine.checkpoint import save_checkpoint

    config = tiny_config()
    torch.manual_seed(0)
    model = build_model(config, build_task(config).spec)
    optimizer = torch.optim.AdamW(model.parameters())
    state = {"step": 1, "optimizer": optimizer.state_dict(), "rng_cpu": torch.get_rng_state()}
    return save_checkpoint(folder / name, model, config, step=1, train_state=state)


def _rewrite_header(folder: Path, name: str, change) -> Path:
    """A copy of a good checkpoint (and its training state) whose header metadata ``change`` edits."""
    good = make_good_checkpoint(folder, "base.safetensors")
    with safetensors.safe_open(str(good), framework="pt") as handle:
        metadata = dict(handle.metadata())
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 - not a dict
    change(metadata)
    path = folder / name
    safetensors.torch.save_file(tensors, str(path), metadata=metadata)
    path.with_name(path.stem + ".state.pt").write_bytes(good.with_name("base.state.pt").read_bytes())
    for leftover in folder.glob("base.*"):
        leftover.unlink()
    return path


def _with_config(edit):
    def change(metadata):
        config = json.loads(metadata["config"])
        metadata["config"] = edit(config) if callable(edit) else edit
    return change


# ------------------------------------------------------------ checkpoint headers
@case("checkpoint")
def make_ckpt_step_text(folder: Path) -> Path:
    return _rewrite_header(folder, "step_text.safetensors", lambda m: m.update(step="abc"))


@case("checkpoint")
def make_ckpt_step_negative(folder: Path) -> Path:
    return _rewrite_header(folder, "step_negative.safetensors", lambda m: m.update(step="-7"))


@case("checkpoint")
def make_ckpt_step_float(folder: Path) -> Path:
    return _rewrite_header(folder, "step_float.safetensors", lambda m: m.update(step="2.5e3x"))


@case("checkpoint")
def make_ckpt_config_deep_list(folder: Path) -> Path:
    return _rewrite_header(folder, "config_deep_list.safetensors", _with_config("[" * DEEP + "]" * DEEP))


@case("checkpoint")
def make_ckpt_config_deep_object(folder: Path) -> Path:
    deep = '{"model": ' + '{"a": ' * DEEP + "1" + "}" * DEEP + "}"
    return _rewrite_header(folder, "config_deep_object.safetensors", _with_config(deep))


@case("checkpoint")
def make_ckpt_config_list(folder: Path) -> Path:
    return _rewrite_header(folder, "config_list.safetensors", _with_config("[1, 2, 3]"))


@case("checkpoint")
def make_ckpt_config_text(folder: Path) -> Path:
    return _rewrite_header(folder, "config_text.safetensors", _with_config('"transformer"'))


@case("checkpoint")
def make_ckpt_config_model_number(folder: Path) -> Path:
    def edit(config):
        config["model"] = 5
        return json.dumps(config)
    return _rewrite_header(folder, "config_model_number.safetensors", _with_config(edit))


@case("checkpoint")
def make_ckpt_config_setting_table(folder: Path) -> Path:
    def edit(config):
        config["train"]["lr"] = {"value": 1}
        return json.dumps(config)
    return _rewrite_header(folder, "config_setting_table.safetensors", _with_config(edit))


@case("checkpoint")
def make_ckpt_config_missing_type(folder: Path) -> Path:
    def edit(config):
        del config["model"]["type"]
        return json.dumps(config)
    return _rewrite_header(folder, "config_missing_type.safetensors", _with_config(edit))


@case("checkpoint")
def make_ckpt_config_not_json(folder: Path) -> Path:
    return _rewrite_header(folder, "config_not_json.safetensors", _with_config("{'model': nope"))


# ------------------------------------------------------------ run-config TOML
def _good_toml() -> dict:
    return tiny_config().to_dict()


@case("toml")
def make_toml_not_utf8(folder: Path) -> Path:
    path = folder / "not_utf8.toml"
    path.write_bytes(tomli_w.dumps(_good_toml()).encode() + b'# caf\xe9 \xff\n')
    return path


@case("toml")
def make_toml_latin1_value(folder: Path) -> Path:
    path = folder / "latin1_value.toml"
    path.write_bytes(b'[model]\ntype = "transf\xf6rmer"\n')
    return path


@case("toml")
def make_toml_deep_array(folder: Path) -> Path:
    path = folder / "deep_array.toml"
    path.write_text(tomli_w.dumps(_good_toml()) + "x = " + "[" * DEEP + "]" * DEEP + "\n", encoding="utf-8")
    return path


@case("toml")
def make_toml_deep_inline_table(folder: Path) -> Path:
    path = folder / "deep_inline.toml"
    path.write_text("[model]\nextra = " + "{a = " * DEEP + "1" + "}" * DEEP + "\n", encoding="utf-8")
    return path


@case("toml")
def make_toml_deep_dotted_table(folder: Path) -> Path:
    path = folder / "deep_dotted.toml"
    path.write_text("[" + ".".join(["a"] * DEEP) + "]\nb = 1\n", encoding="utf-8")
    return path


@case("toml")
def make_toml_model_number(folder: Path) -> Path:
    data = _good_toml()
    data["model"] = 5
    path = folder / "model_number.toml"
    path.write_text(tomli_w.dumps(data), encoding="utf-8")
    return path


@case("toml")
def make_toml_task_list(folder: Path) -> Path:
    data = _good_toml()
    data["task"] = ["listops"]
    path = folder / "task_list.toml"
    path.write_text(tomli_w.dumps(data), encoding="utf-8")
    return path


@case("toml")
def make_toml_model_array_of_tables(folder: Path) -> Path:
    path = folder / "model_array.toml"
    path.write_text('[[model]]\ntype = "transformer"\n[task]\nname = "listops"\n', encoding="utf-8")
    return path


@case("toml")
def make_toml_steps_text(folder: Path) -> Path:
    data = _good_toml()
    data["train"]["steps"] = "many"
    path = folder / "steps_text.toml"
    path.write_text(tomli_w.dumps(data), encoding="utf-8")
    return path


@case("toml")
def make_toml_setting_table(folder: Path) -> Path:
    data = _good_toml()
    data["model"]["d_model"] = {"wide": True}
    path = folder / "setting_table.toml"
    path.write_text(tomli_w.dumps(data), encoding="utf-8")
    return path


@case("toml")
def make_toml_type_number(folder: Path) -> Path:
    data = _good_toml()
    data["model"]["type"] = 7
    path = folder / "type_number.toml"
    path.write_text(tomli_w.dumps(data), encoding="utf-8")
    return path


@case("toml")
def make_toml_compress_method_list(folder: Path) -> Path:
    data = _good_toml()
    data["compress"] = [{"method": ["prune"]}]
    path = folder / "compress_method_list.toml"
    path.write_text(tomli_w.dumps(data), encoding="utf-8")
    return path


@case("toml")
def make_toml_escaped_quotes(folder: Path) -> Path:
    """Nearly 1 MB of escaped quotes in a string that never ends, then brackets: a scan that retries
    every quote as the start of a string takes hours on it; a bounded reader refuses it at once."""
    path = folder / "escaped_quotes.toml"
    path.write_text('[model]\nx = "' + '\\"' * 400_000 + "[" * 100 + "\n", encoding="utf-8")
    return path


@case("checkpoint")
def make_ckpt_config_escaped_quotes(folder: Path) -> Path:
    text = '["' + '\\"' * 400_000 + "[" * 100
    return _rewrite_header(folder, "config_escaped_quotes.safetensors", _with_config(text))


@case("toml")
def make_toml_oversized(folder: Path) -> Path:
    path = folder / "oversized.toml"
    path.write_text(tomli_w.dumps(_good_toml()) + "# " + "x" * (3 << 20) + "\n", encoding="utf-8")
    return path


# ------------------------------------------------------------ run folders (runs import)
def _good_events() -> list[dict]:
    return [
        {"event": "start", "run_dir": "/elsewhere/run", "device": "cpu", "params": 1000, "total_steps": 2,
         "start_step": 0},
        {"event": "step", "step": 1, "total_steps": 2, "loss": 1.5, "lr": 0.001, "tokens_per_s": 100.0,
         "rss_mb": 50.0, "grad_norm": 1.0, "elapsed_s": 0.1, "metrics": {}},
        {"event": "step", "step": 2, "total_steps": 2, "loss": 1.25, "lr": 0.001, "tokens_per_s": 100.0,
         "rss_mb": 50.0, "grad_norm": 1.0, "elapsed_s": 0.2, "metrics": {}},
        {"event": "done", "steps": 2, "final_loss": 1.3, "val_accuracy": 0.5, "checkpoint": None,
         "seconds": 0.3, "status": "finished", "error": None},
    ]


def make_good_run_folder(folder: Path, name: str = "good_run", lines: list[bytes] | None = None,
                         config: bytes | None = None) -> Path:
    """A run folder that `runs import` records; ``lines`` replace the event log's third line."""
    run = folder / name
    run.mkdir()
    (run / "config.toml").write_bytes(config if config is not None else tomli_w.dumps(_good_toml()).encode())
    events = [json.dumps(e).encode() for e in _good_events()]
    if lines is not None:
        events[2:3] = lines
    (run / "events.jsonl").write_bytes(b"\n".join(events) + b"\n")
    return run


@case("run_folder")
def make_run_list_line(folder: Path) -> Path:
    return make_good_run_folder(folder, "run_list_line", [b'["step", 1, 2]'])


@case("run_folder")
def make_run_step_text(folder: Path) -> Path:
    record = {**_good_events()[2], "step": "three"}
    return make_good_run_folder(folder, "run_step_text", [json.dumps(record).encode()])


@case("run_folder")
def make_run_loss_table(folder: Path) -> Path:
    record = {**_good_events()[2], "loss": {"value": 1.0}}
    return make_good_run_folder(folder, "run_loss_table", [json.dumps(record).encode()])


@case("run_folder")
def make_run_metrics_list(folder: Path) -> Path:
    record = {**_good_events()[2], "metrics": [1, 2]}
    return make_good_run_folder(folder, "run_metrics_list", [json.dumps(record).encode()])


@case("run_folder")
def make_run_event_number(folder: Path) -> Path:
    record = {**_good_events()[2], "event": 5}
    return make_good_run_folder(folder, "run_event_number", [json.dumps(record).encode()])


@case("run_folder")
def make_run_missing_field(folder: Path) -> Path:
    record = {key: value for key, value in _good_events()[2].items() if key != "loss"}
    return make_good_run_folder(folder, "run_missing_field", [json.dumps(record).encode()])


@case("run_folder")
def make_run_deep_line(folder: Path) -> Path:
    return make_good_run_folder(folder, "run_deep_line", [b"[" * 200_000 + b"]" * 200_000])


@case("run_folder")
def make_run_deep_object_line(folder: Path) -> Path:
    deep = b'{"event": "step", "metrics": ' + b'{"a": ' * DEEP + b"1" + b"}" * DEEP + b"}"
    return make_good_run_folder(folder, "run_deep_object_line", [deep])


@case("run_folder")
def make_run_huge_line(folder: Path) -> Path:
    """An event log whose third line is 100 MB long (one log message)."""
    run = make_good_run_folder(folder, "run_huge_line", [b"PLACEHOLDER"])
    events = (run / "events.jsonl").read_bytes()
    head, tail = events.split(b"PLACEHOLDER")
    with open(run / "events.jsonl", "wb") as handle:
        handle.write(head + b'{"event": "log", "level": "info", "message": "')
        chunk = b"x" * (1 << 20)
        for _ in range(100):
            handle.write(chunk)
        handle.write(b'"}' + tail)
    return run


@case("run_folder")
def make_run_line_not_utf8(folder: Path) -> Path:
    return make_good_run_folder(folder, "run_line_not_utf8",
                                [b'{"event": "log", "level": "info", "message": "caf\xe9"}'])


@case("run_folder")
def make_run_config_not_utf8(folder: Path) -> Path:
    return make_good_run_folder(folder, "run_config_not_utf8",
                                config=tomli_w.dumps(_good_toml()).encode() + b"# \xc3\x28\n")


@case("run_folder")
def make_run_config_model_number(folder: Path) -> Path:
    data = _good_toml()
    data["model"] = 5
    return make_good_run_folder(folder, "run_config_model_number", config=tomli_w.dumps(data).encode())


@case("run_folder")
def make_run_events_symlink_loop(folder: Path) -> Path:
    run = make_good_run_folder(folder, "run_events_loop")
    (run / "events.jsonl").unlink()
    os.symlink("events.jsonl", run / "events.jsonl")
    return run


@case("run_folder")
def make_run_config_symlink_loop(folder: Path) -> Path:
    run = make_good_run_folder(folder, "run_config_loop")
    (run / "config.toml").unlink()
    os.symlink("loop_b", run / "config.toml")
    os.symlink("config.toml", run / "loop_b")
    return run


# ------------------------------------------------------------ values of the right syntax and a wrong meaning
@case("checkpoint")
def make_ckpt_step_other_digits(folder: Path) -> Path:
    """``step = "\u0663"`` (ARABIC-INDIC DIGIT THREE): Python's int() reads it as 3."""
    return _rewrite_header(folder, "step_other_digits.safetensors", lambda m: m.update(step="\u0663"))


@case("checkpoint")
def make_ckpt_step_underscore(folder: Path) -> Path:
    """``step = "1_0"``: Python's int() reads it as 10."""
    return _rewrite_header(folder, "step_underscore.safetensors", lambda m: m.update(step="1_0"))


@case("checkpoint")
def make_ckpt_config_lone_surrogate(folder: Path) -> Path:
    """Config JSON escaping half of a UTF-16 pair: valid JSON, a string no file or terminal can encode."""
    return _rewrite_header(folder, "config_lone_surrogate.safetensors",
                           _with_config(lambda config: json.dumps(config).replace('"transformer"', '"\\ud800"')))


def make_ckpt_config_seed_max_int(folder: Path) -> Path:
    """A seed of 2**63 - 1: fits 64 bits, but the seeds derived from it (seed x 1,000,003) do not."""
    def edit(config):
        config["train"]["seed"] = 2**63 - 1
        return json.dumps(config)
    return _rewrite_header(folder, "config_seed_max_int.safetensors", _with_config(edit))


def _toml_with(folder: Path, name: str, edit) -> Path:
    text = tomli_w.dumps(_good_toml())
    path = folder / name
    path.write_text(edit(text), encoding="utf-8")
    return path


@case("toml")
def make_toml_seed_max_int(folder: Path) -> Path:
    """A training seed of 2**63 - 1: fits 64 bits, but the seeds derived from it (seed x 1,000,003) do not."""
    data = _good_toml()
    data["train"]["seed"] = 2**63 - 1
    path = folder / "seed_max_int.toml"
    path.write_text(tomli_w.dumps(data), encoding="utf-8")
    return path


@case("toml")
def make_toml_int_for_bool(folder: Path) -> Path:
    return _toml_with(folder, "int_for_bool.toml", lambda t: t.replace("compile = false", "compile = 1"))


@case("toml")
def make_toml_section_typo(folder: Path) -> Path:
    return _toml_with(folder, "section_typo.toml", lambda t: t + "\n[modle]\nd_model = 32\n")


@case("toml")
def make_toml_choice_wrong_case(folder: Path) -> Path:
    return _toml_with(folder, "choice_case.toml", lambda t: t.replace('device = "cpu"', 'device = "CPU"'))


@case("toml")
def make_toml_plugin_attention(folder: Path) -> Path:
    """An attention kind a plugin would provide, not installed here."""
    return _toml_with(folder, "plugin_attention.toml",
                      lambda t: t.replace('attention = "sdpa"', 'attention = "flash_plugin"'))


@case("toml")
def make_toml_attention_not_causal(folder: Path) -> Path:
    """A language-modelling task with an attention kind that cannot be causal: found when the model is built."""
    data = _config_of("transformer", "copy")
    data["model"]["attention"] = "linformer"
    data["attention"] = {"k": 4}
    path = folder / "attention_not_causal.toml"
    path.write_text(tomli_w.dumps(data), encoding="utf-8")
    return path


@case("toml")
def make_toml_cross_attention_kind(folder: Path) -> Path:
    """An encoder-decoder whose cross-attention kind assumes queries and keys at the same positions."""
    data = _config_of("seq2seq", "copy")
    data["model"]["cross_attention"] = "linear"
    path = folder / "cross_attention_kind.toml"
    path.write_text(tomli_w.dumps(data), encoding="utf-8")
    return path


def _config_of(model: str, task: str) -> dict:
    from effstudio.engine.run_config import RunConfig

    small = {key: value for key, value in TINY.items() if key.split(".")[1] in ("d_model", "heads", "dropout")
             or key.startswith("train.")}
    return RunConfig.create(model, task, small).to_dict()


@case("run_folder")
def make_run_lone_surrogate(folder: Path) -> Path:
    return make_good_run_folder(folder, "run_lone_surrogate",
                                [b'{"event": "log", "level": "info", "message": "half \\udc00 a pair"}'])


# ------------------------------------------------------------ paths
@case("path")
def make_symlink_loop(folder: Path) -> Path:
    """A name that points to itself: any command given it as an input must say "symlink loop"."""
    path = folder / "loop.safetensors"
    os.symlink(path.name, path)
    return path


@case("path")
def make_symlink_loop_pair(folder: Path) -> Path:
    first, second = folder / "a.toml", folder / "b.toml"
    os.symlink(second.name, first)
    os.symlink(first.name, second)
    return first


@case("path")
def make_fifo(folder: Path) -> Path:
    path = folder / "pipe.safetensors"
    os.mkfifo(path)
    return path


# what the one-line message must name besides the file: the field, the line, or the reason
FIELDS = {
    "ckpt_step_text": "step", "ckpt_step_negative": "step", "ckpt_step_float": "step",
    "ckpt_config_deep_list": "config", "ckpt_config_deep_object": "config", "ckpt_config_list": "config",
    "ckpt_config_text": "config", "ckpt_config_model_number": "model", "ckpt_config_setting_table": "lr",
    "ckpt_config_missing_type": "model.type", "ckpt_config_not_json": "config",
    "toml_not_utf8": "byte 0xe9", "toml_latin1_value": "byte 0xf6", "toml_deep_array": "nested deeper",
    "toml_deep_inline_table": "nested deeper", "toml_deep_dotted_table": "nested deeper",
    "toml_model_number": "model", "toml_task_list": "task", "toml_model_array_of_tables": "model",
    "toml_steps_text": "train.steps", "toml_setting_table": "model.d_model", "toml_type_number": "model.type",
    "toml_compress_method_list": "compress[1].method", "toml_oversized": "limit",
    "toml_escaped_quotes": "not valid TOML", "ckpt_config_escaped_quotes": "config",
    "run_list_line": "events.jsonl:3", "run_step_text": "step", "run_loss_table": "loss",
    "run_metrics_list": "metrics", "run_event_number": "event", "run_missing_field": "loss",
    "run_deep_line": "events.jsonl:3", "run_deep_object_line": "events.jsonl:3",
    "run_huge_line": "events.jsonl:3", "run_line_not_utf8": "events.jsonl:3", "run_config_not_utf8": "byte 0xc3",
    "run_config_model_number": "model", "run_events_symlink_loop": "symlink loop",
    "run_config_symlink_loop": "symlink loop",
    "ckpt_step_other_digits": "step", "ckpt_step_underscore": "step",
    "ckpt_config_lone_surrogate": "lone surrogate", "toml_seed_max_int": "train.seed", "toml_int_for_bool": "train.compile",
    "toml_section_typo": "did you mean 'model'", "toml_choice_wrong_case": "did you mean 'cpu'",
    "toml_plugin_attention": "plugin", "run_lone_surrogate": "events.jsonl:3",
    "toml_attention_not_causal": "model.attention", "toml_cross_attention_kind": "model.cross_attention",
    "symlink_loop": "symlink loop", "symlink_loop_pair": "symlink loop", "fifo": "pipe",
}
