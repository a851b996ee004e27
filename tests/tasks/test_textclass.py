"""textclass: every reader, the splits and their duplicates, the cache, the label map through a checkpoint,
and one clear line (exit code 2, nothing cached) for each kind of bad input."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import pytest
import torch

from effstudio.cli import main
from effstudio.config import ConfigError
from effstudio.paths import task_cache_dir
from effstudio.tasks.text_splits import label_order
from effstudio.tasks.text_table import DataError, read_rows, sniff_table
from effstudio.tasks.textclass import TextClassConfig, TextClassTask
from effstudio.tasks.tokenizer import TextTokenizer

WORDS = "river stone cloud lamp seed frost ember moss tide fern wheel bell".split()
SMALL = {"vocab_size": 300, "max_length": 24}


def documents(count: int, labels: tuple[str, ...] = ("neg", "pos")) -> list[tuple[str, str]]:
    """Distinct short documents whose label is said by a cue word at their start."""
    rows = []
    for i in range(count):
        label = labels[i % len(labels)]
        body = " ".join(WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(3 + i % 4))
        rows.append((f"{label}cue {body} number{i}", label))
    return rows


def write_csv(path: Path, rows: list[tuple[str, ...]], header: tuple[str, ...] = ("text", "label"),
              delimiter: str = ",", encoding: str = "utf-8") -> Path:
    with open(path, "w", newline="", encoding=encoding) as handle:
        writer = csv.writer(handle, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def make(path: Path, **changes) -> TextClassTask:
    return TextClassTask(TextClassConfig(path=str(path), **{**SMALL, **changes}))


def cached_files() -> list[Path]:
    """The encoded splits and trained tokenizers in the cache."""
    folders = [task_cache_dir("textclass"), task_cache_dir("tokenizers")]
    return sorted(file for folder in folders if folder.is_dir() for file in folder.glob("*"))


# ------------------------------------------------------------------ readers
def test_csv_keeps_quoted_newlines_and_delimiters_and_numbers_records_by_their_first_line(tmp_path):
    path = tmp_path / "quoted.csv"
    path.write_text('text,label\n"first, with a comma\nand a second line",a\nplain,b\n\n"say ""hi""",a\n',
                    encoding="utf-8")
    fmt = sniff_table(path)
    assert (fmt.kind, fmt.delimiter, fmt.encoding, fmt.columns) == ("csv", ",", "utf-8", ("text", "label"))
    rows = [row for chunk in read_rows(path, fmt, ["label", "text"]) for row in chunk]
    assert rows == [(2, ("a", "first, with a comma\nand a second line")), (4, ("b", "plain")),
                    (6, ("a", 'say "hi"'))]


@pytest.mark.parametrize(("name", "delimiter", "encoding", "expected_encoding"), [
    ("data.tsv", "\t", "utf-8", "utf-8"),
    ("semi.csv", ";", "utf-8-sig", "utf-8-sig"),
    ("wide.csv", "|", "utf-16", "utf-16"),
    ("old.csv", ",", "cp1252", "cp1252"),
])
def test_delimiter_and_encoding_are_detected(tmp_path, name, delimiter, encoding, expected_encoding):
    rows = [("caf\u00e9 cr\u00e8me", "x"), ("na\u00efve, text", "y")]
    path = write_csv(tmp_path / name, rows, delimiter=delimiter, encoding=encoding)
    fmt = sniff_table(path)
    assert (fmt.delimiter, fmt.encoding) == (delimiter, expected_encoding)
    assert [values for chunk in read_rows(path, fmt, ["text", "label"]) for _, values in chunk] == rows


def test_json_lines_and_a_folder_per_class(tmp_path):
    lines = tmp_path / "data.jsonl"
    long = "word " * 20_000  # longer than the head that is sniffed
    lines.write_text(json.dumps({"body": long, "y": 3}) + '\n\n{"body": "two", "y": 10}\n', encoding="utf-8")
    fmt = sniff_table(lines)
    assert fmt.kind == "jsonl" and fmt.columns == ("body", "y")
    assert [r for c in read_rows(lines, fmt, ["body", "y"]) for r in c] == [(1, (long, "3")), (3, ("two", "10"))]
    root = tmp_path / "docs"
    for label, texts in {"spam": ["buy now", "cheap"], "ham": ["hello friend"]}.items():
        (root / label).mkdir(parents=True)
        for i, text in enumerate(texts):
            (root / label / f"{i}.txt").write_text(text, encoding="utf-8")
    fmt = sniff_table(root)
    assert fmt.kind == "folder"
    values = [v for c in read_rows(root, fmt, ["text", "label"]) for _, v in c]
    assert values == [("hello friend", "ham"), ("buy now", "spam"), ("cheap", "spam")]


def test_labels_sort_as_numbers_when_they_all_are():
    assert label_order({"10", "2", "1"}) == ["1", "2", "10"]
    assert label_order({"b", "a", "10"}) == ["10", "a", "b"]


# ------------------------------------------------------------------ splits, duplicates, cache
def test_seeded_stratified_split_keeps_each_class_share_and_is_repeatable(tmp_path):
    path = write_csv(tmp_path / "d.csv", documents(60, ("a", "b", "c")))
    task = make(path, val_fraction=0.2, test_fraction=0.1, seed=3)
    assert task.label_names == ["a", "b", "c"] and task.spec.class_names == ("a", "b", "c")
    assert task.spec.objective == "classify" and task.spec.num_classes == 3
    assert [task.class_counts(s) for s in ("train", "val", "test")] == [
        {"a": 14, "b": 14, "c": 14}, {"a": 4, "b": 4, "c": 4}, {"a": 2, "b": 2, "c": 2}]
    again = make(path, val_fraction=0.2, test_fraction=0.1, seed=3)
    other = make(path, val_fraction=0.2, test_fraction=0.1, seed=4)

    def val_texts(t: TextClassTask) -> list[str]:
        return [example.text for example in t.examples("val", 100)]

    assert val_texts(task) == val_texts(again) and val_texts(task) != val_texts(other)
    assert torch.equal(task.split("val").targets, again.split("val").targets)
    split = task.split("train")
    assert split.inputs.dtype == torch.int64 and split.inputs.shape[1] <= 24
    assert (split.inputs[:, 0] == task.tokenizer.cls_id).all()


def test_split_column_and_separate_files_with_duplicates_removed_and_counted(tmp_path):
    rows = documents(30)
    with_split = [(text, label, "train" if i < 20 else ("validation" if i < 25 else "test"))
                  for i, (text, label) in enumerate(rows)]
    with_split += [(rows[0][0], rows[0][1], "val"), (rows[1][0], rows[1][1], "test"),
                   (rows[21][0], rows[21][1], "test")]  # in train, in train, in val
    path = write_csv(tmp_path / "s.csv", with_split, header=("text", "label", "part"))
    task = make(path, split_column="part")
    assert task.duplicates_removed == 3
    assert [len(task.split(s)) for s in ("train", "val", "test")] == [20, 5, 5]
    assert any("3 validation/test rows left out" in note for note in task.notes())

    train = write_csv(tmp_path / "train.csv", rows[:20])
    val = write_csv(tmp_path / "val.csv", rows[20:] + rows[:2])
    task = make(train, val_path=str(val), test_fraction=0.0)
    assert task.duplicates_removed == 2
    assert [len(task.split(s)) for s in ("train", "val", "test")] == [20, 10, 0]


def test_text_pair_becomes_one_sequence_with_a_separator(tmp_path):
    rows = [(f"premise {i}", f"hypothesis {i % 3}", "yes" if i % 2 else "no") for i in range(20)]
    path = write_csv(tmp_path / "pairs.csv", rows, header=("premise", "hypothesis", "label"))
    task = make(path, text_column="premise", text_pair_column="hypothesis", val_fraction=0.2, test_fraction=0.0)
    ids = task.examples("train", 1)[0].ids
    assert ids[0] == task.tokenizer.cls_id and ids[-1] == task.tokenizer.sep_id
    assert ids.count(task.tokenizer.sep_id) == 2


def test_a_folder_per_class_and_a_tokenizer_file(tmp_path):
    root = tmp_path / "docs"
    for text, label in documents(30, ("ham", "spam")):
        (root / label).mkdir(parents=True, exist_ok=True)
        (root / label / f"{len(list((root / label).iterdir()))}.txt").write_text(text, encoding="utf-8")
    task = make(root, val_fraction=0.2, test_fraction=0.0)
    assert task.label_names == ["ham", "spam"] and task.class_counts("val") == {"ham": 3, "spam": 3}
    saved = tmp_path / "tokenizer.json"
    task.tokenizer.save(saved)
    again = make(root, val_fraction=0.2, test_fraction=0.0, tokenizer="file", tokenizer_path=str(saved))
    assert again.tokenizer.fingerprint() == task.tokenizer.fingerprint()
    assert torch.equal(again.split("train").inputs, task.split("train").inputs)


def test_second_build_reads_the_cache_without_encoding(tmp_path, monkeypatch):
    path = write_csv(tmp_path / "c.csv", documents(40))
    first = make(path)
    assert len(cached_files()) >= 1

    def no_encoding(self):
        raise AssertionError("encoded again instead of reading the cache")

    monkeypatch.setattr(TextClassTask, "_encode", no_encoding)
    second = make(path)
    assert torch.equal(first.split("train").inputs, second.split("train").inputs)
    assert second.source()["sha256"] == first.source()["sha256"] and second.source()["bytes"] == path.stat().st_size
    path.write_text(path.read_text() + "another document entirely,pos\n")
    with pytest.raises(AssertionError, match="encoded again"):
        make(path)  # the file changed: its hash, and so the cache key, changed


def test_lengths_and_examples_show_word_pieces(tmp_path):
    path = write_csv(tmp_path / "e.csv", documents(40))
    task = make(path, max_length=8)
    assert (task.lengths("train") > 8).any()  # the full lengths, before the cut
    assert task.split("train").inputs.shape[1] == 8
    example = task.examples("val", 2)[0]
    assert example.label in ("neg", "pos") and example.tokens == tuple(task.decode(list(example.ids)))
    assert any(token.strip("#Ġ▁") and token.strip("#Ġ▁") in example.text for token in example.tokens[1:-1])


# ------------------------------------------------------------------ checkpoints
def train_run(tmp_path: Path, data: Path, *extra: str) -> Path:
    out = tmp_path / "run"
    code = main(["train", "--model", "transformer", "--task", "textclass", "--set", f"task.path={data}",
                 "--set", "task.vocab_size=300", "--set", "task.max_length=24", "--set", "model.d_model=32",
                 "--set", "model.layers=1", "--set", "model.heads=2", "--steps", "2", "--out", str(out),
                 "--no-record", "--json", *extra])
    assert code == 0
    return out / "checkpoint.safetensors"


def test_label_map_and_tokenizer_survive_a_checkpoint(tmp_path, capsys, one_thread):
    from effstudio.engine.checkpoint import read_info
    from effstudio.engine.loading import load_checkpoint

    data = write_csv(tmp_path / "labels.csv", documents(40, ("10", "2", "alpha")))
    checkpoint = train_run(tmp_path, data)
    info = read_info(checkpoint)
    assert json.loads(info.metadata["effstudio.task.labels"]) == ["10", "2", "alpha"]
    source = json.loads(info.metadata["effstudio.task.source"])
    assert source["path"] == str(data) and source["bytes"] == data.stat().st_size and len(source["sha256"]) == 64
    stored = checkpoint.with_name("checkpoint.tokenizer.json")
    assert stored.is_file()
    assert json.loads(info.metadata["effstudio.task_files"])["tokenizer.json"] == hashlib.sha256(
        stored.read_bytes()).hexdigest()

    # the data grows new words: a tokenizer trained again would differ, the stored one is used
    write_csv(data, documents(40, ("10", "2", "alpha")) + [("zebra quokka narwhal axolotl", "2")] * 5)
    loaded = load_checkpoint(checkpoint)
    assert loaded.task.label_names == ["10", "2", "alpha"]
    assert loaded.task.tokenizer.to_json().encode("utf-8") == stored.read_bytes()
    capsys.readouterr()
    assert main(["compare", str(checkpoint), "--allow-path", str(data), "--json"]) == 0
    row = json.loads(capsys.readouterr().out)["rows"][0]
    assert 0.0 <= row["accuracy"] <= 1.0

    # a compressed model is written with the same tokenizer beside it, and a resumed run keeps it
    quantized = tmp_path / "small.safetensors"
    assert main(["quantize", str(checkpoint), "--method", "dynamic-int8", "--out", str(quantized),
                 "--allow-path", str(data), "--json"]) == 0
    assert quantized.with_name("small.tokenizer.json").read_bytes() == stored.read_bytes()
    assert load_checkpoint(quantized).task.label_names == ["10", "2", "alpha"]
    exported = tmp_path / "model.onnx"
    assert main(["export", "onnx", str(checkpoint), "--out", str(exported), "--allow-path", str(data), "--json"]) == 0
    assert exported.with_name("model.tokenizer.json").read_bytes() == stored.read_bytes()
    capsys.readouterr()
    assert main(["compare", str(exported), str(quantized), "--allow-path", str(data), "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["rows"]) == 2
    assert main(["train", "--resume", str(checkpoint), "--steps", "3", "--allow-path", str(data),
                 "--no-record", "--json"]) == 0
    assert read_info(checkpoint).step == 3 and stored.read_bytes() == quantized.with_name(
        "small.tokenizer.json").read_bytes()

    # data that gained a label the model never saw is refused, naming it
    write_csv(data, documents(40, ("10", "2", "alpha", "beta")))
    with pytest.raises(DataError, match="label 'beta' is not one the model was trained on"):
        load_checkpoint(checkpoint).task.split("val")

    stored.write_text(stored.read_text() + " ")
    with pytest.raises(Exception, match="does not belong to"):
        load_checkpoint(checkpoint)


# ------------------------------------------------------------------ bad input
def bad_inputs(tmp_path: Path) -> list[tuple[str, list[str], str]]:
    good = documents(20)
    cases = []
    path = tmp_path / "bytes.csv"
    path.write_bytes(b"text,label\nfine text,a\nbad \xff byte,b\nok caf\xc3\xa9,a\nalso \xfe,b\n")
    cases.append(("undecodable", [f"task.path={path}"], f"{path}: line 3, column 'text': bytes that are not "
                                                          "utf-8 (also line 5)"))
    path = write_csv(tmp_path / "cols.csv", good, header=("body", "label"))
    cases.append(("missing column", [f"task.path={path}"], f"{path}: line 1: no column 'text'; its header: "
                                                             "'body', 'label'"))
    path = write_csv(tmp_path / "empty_text.csv", [*good[:3], ("  ", "a"), *good[3:]])
    cases.append(("empty text", [f"task.path={path}"], f"{path}: line 5, column 'text': empty text"))
    path = write_csv(tmp_path / "empty_label.csv", [*good[:6], ("words", ""), *good[6:]])
    cases.append(("empty label", [f"task.path={path}"], f"{path}: line 8, column 'label': empty label"))
    path = write_csv(tmp_path / "one.csv", [(text, "same") for text, _ in good])
    cases.append(("single class", [f"task.path={path}"], f"{path}, column 'label': every row has the label 'same'"))
    path = write_csv(tmp_path / "many.csv", [(text, str(i)) for i, (text, _) in enumerate(good)])
    cases.append(("too many classes", [f"task.path={path}", "task.max_classes=5"],
                  f"{path}: line 7, column 'label': '5' is label number 6, more than task.max_classes=5"))
    path = tmp_path / "binary.csv"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    cases.append(("binary", [f"task.path={path}"], f"{path} looks like a binary file"))
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    cases.append(("empty file", [f"task.path={path}"], f"{path} is empty"))
    root = tmp_path / "loose"
    (root / "a").mkdir(parents=True)
    (root / "a" / "1.txt").write_text("x")
    (root / "b").mkdir()
    (root / "b" / "1.txt").write_text("y")
    (root / "stray.txt").write_text("z")
    cases.append(("loose files", [f"task.path={root}"], f"{root} holds loose files (stray.txt)"))
    root = tmp_path / "oneclass"
    (root / "only").mkdir(parents=True)
    (root / "only" / "1.txt").write_text("x")
    cases.append(("folder of one class", [f"task.path={root}"], f"{root} has one class ('only')"))
    path = write_csv(tmp_path / "fine.csv", good)
    broken = tmp_path / "tokenizer.json"
    broken.write_text("{not json")
    cases.append(("unreadable tokenizer", [f"task.path={path}", "task.tokenizer=file",
                                           f"task.tokenizer_path={broken}"], str(broken)))
    return cases


def test_each_bad_input_is_one_line_exit_2_and_nothing_cached(tmp_path, capsys):
    for name, settings, expected in bad_inputs(tmp_path):
        args = ["train", "--model", "transformer", "--task", "textclass", "--steps", "1",
                "--out", str(tmp_path / "out" / name.replace(" ", "_")), "--no-record"]
        for setting in [*settings, "task.vocab_size=300"]:
            args += ["--set", setting]
        assert main(args) == 2, name
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, (name, err)
        assert expected in err, (name, err)
        assert not cached_files(), name
        assert not (tmp_path / "out" / name.replace(" ", "_")).exists(), name


def test_skip_bad_rows_leaves_them_out_and_says_how_many(tmp_path):
    path = tmp_path / "skip.csv"
    good = documents(20)
    lines = [f"{text},{label}" for text, label in good] + ["caf\u00e9 au lait,pos"]  # UTF-8 by its head
    path.write_bytes(("text,label\n" + "\n".join(lines) + "\n").encode() + b"bad \xff row,pos\nworse \xfe,neg\n")
    task = make(path, skip_bad_rows=True)
    assert task.skipped_rows == 2
    assert sum(len(task.split(s)) for s in ("train", "val", "test")) == 21
    assert any("2 rows with undecodable bytes skipped" in note for note in task.notes())


def test_config_refuses_a_file_tokenizer_without_a_file():
    with pytest.raises(ConfigError, match="tokenizer_path"):
        TextClassTask(TextClassConfig(path="x.csv", tokenizer="file"))


def test_a_row_with_too_many_fields_names_its_line(tmp_path):
    path = tmp_path / "fields.csv"
    path.write_text("text,label\ngood,a\nun, quoted,b\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"fields\.csv: line 3: 3 fields where the header names 2"):
        list(read_rows(path, sniff_table(path), ["text", "label"]))


@pytest.mark.parametrize("name", ["../outside.json", "/etc/passwd", "sub/dir.json", ".."])
def test_a_header_naming_a_task_file_outside_its_folder_is_refused(tmp_path, name):
    import safetensors.torch

    from effstudio.engine.checkpoint import (
        CheckpointError,
        checkpoint_metadata,
        read_info,
        saved_task_data,
    )
    from effstudio.engine.run_config import RunConfig

    (tmp_path / "outside.json").write_text("{}")
    metadata = checkpoint_metadata(RunConfig.create("transformer", "listops", []), 1,
                                   {"effstudio.task_files": json.dumps({name: "0" * 64})})
    path = tmp_path / "run" / "checkpoint.safetensors"
    path.parent.mkdir()
    safetensors.torch.save_file({"x": torch.zeros(1)}, str(path), metadata=metadata)
    with pytest.raises(CheckpointError, match="not a task file name"):
        saved_task_data(read_info(path))


def test_the_same_settings_from_a_toml_config(tmp_path, one_thread):
    from effstudio.engine.checkpoint import read_info
    from effstudio.engine.run_config import RunConfig, write_toml

    rows = [(text, f"note {i % 5}", label) for i, (text, label) in enumerate(documents(30))]
    data = write_csv(tmp_path / "notes.tsv", rows, header=("body", "extra", "kind"), delimiter="\t")
    config = RunConfig.create("transformer", "textclass", [
        f"task.path={data}", "task.text_column=body", "task.text_pair_column=extra", "task.label_column=kind",
        "task.tokenizer=wordpiece", "task.vocab_size=300", "task.max_length=24", "model.d_model=32",
        "model.layers=1", "model.heads=2", "train.steps=2"])
    toml = tmp_path / "run.toml"
    write_toml(toml, config)
    assert main(["train", "--config", str(toml), "--out", str(tmp_path / "run"), "--no-record", "--json"]) == 0
    saved = read_info(tmp_path / "run" / "checkpoint.safetensors").config.task
    assert (saved.text_column, saved.text_pair_column, saved.label_column, saved.tokenizer) == (
        "body", "extra", "kind", "wordpiece")


def test_a_task_rebuilt_from_saved_data_needs_no_data_until_a_split_is_asked_for(tmp_path):
    data = write_csv(tmp_path / "gone.csv", documents(30))
    task = make(data)
    saved = task.saved_data()
    data.unlink()
    rebuilt = TextClassTask.from_saved(TextClassConfig(path=str(data), **SMALL), saved)
    assert rebuilt.spec == task.spec and rebuilt.saved_data() == saved
    with pytest.raises(DataError, match="no such file"):
        rebuilt.split("val")


def test_the_inspector_names_the_labels_the_data_and_the_word_pieces(tmp_path, capsys, one_thread):
    from effstudio.inspect import open_model

    data = write_csv(tmp_path / "reviews.csv", documents(40, ("bad", "good", "mixed")))
    checkpoint = train_run(tmp_path, data)
    capsys.readouterr()
    notes = open_model(checkpoint).notes
    assert "labels (3): bad, good, mixed" in notes
    assert any(note.startswith(f"trained on reviews.csv, {data.stat().st_size:,} bytes, sha256 ") for note in notes)
    tokenizer = TextTokenizer.load(checkpoint.with_name("checkpoint.tokenizer.json"))
    note = next(note for note in notes if note.startswith("tokenizer checkpoint.tokenizer.json: "))
    assert f"{tokenizer.vocab_size:,} word pieces, e.g. " in note
    assert set(note.split("e.g. ")[1].split(" ")) <= set(tokenizer.tokens())
    # a replaced tokenizer file is a note, and the weights are still inspected
    checkpoint.with_name("checkpoint.tokenizer.json").write_text("{}", encoding="utf-8")
    inspected = open_model(checkpoint)
    assert inspected.params > 0
    assert any(note.startswith("task data: ") and "does not belong" in note for note in inspected.notes)
