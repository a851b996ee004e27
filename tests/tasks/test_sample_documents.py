"""The shipped textclass sample: reproducible from its generator, small, and decided by its first and last lines."""

from __future__ import annotations

import csv
import io
import random
import re
from collections import Counter
from pathlib import Path

import tomllib

from effstudio.tasks.sample_documents import (
    CLASS_WEIGHTS,
    CLOSINGS,
    OPENINGS,
    SAMPLE_DOCUMENTS,
    short_rows,
    survey_report,
    survey_reports,
    write_csv,
)
from effstudio.tasks.textclass import TextClassConfig, TextClassTask

REPO = Path(__file__).resolve().parents[2]


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_the_shipped_csv_is_what_the_generator_writes(tmp_path):
    again = tmp_path / "again.csv"
    write_csv(again, survey_reports())
    assert again.read_bytes() == SAMPLE_DOCUMENTS.read_bytes()
    assert SAMPLE_DOCUMENTS.stat().st_size < 3_000_000


def test_the_sample_has_four_classes_none_of_them_a_large_majority():
    rows = _rows(SAMPLE_DOCUMENTS)
    assert list(rows[0]) == ["text", "label"]
    counts = Counter(row["label"] for row in rows)
    assert set(counts) == {f"{site}_{verdict}" for site, verdict in CLASS_WEIGHTS}
    assert max(counts.values()) / len(rows) < 0.35
    assert all("\n\n" in row["text"] for row in rows)  # paragraphs: quoted newlines inside the CSV


def _pattern(template: str) -> re.Pattern[str]:
    slots = {"{site}": r"(?P<site>mill|quarry)", "{place}": r"\w+", "{season}": r"\w+"}
    text = re.escape(template)
    for slot, group in slots.items():
        text = text.replace(re.escape(slot), group)
    return re.compile(text)


def test_the_class_is_named_only_at_the_two_ends_of_a_report():
    rng = random.Random(3)
    for site, verdict in CLASS_WEIGHTS:
        text = survey_report(rng, site, verdict)
        paragraphs = text.split("\n\n")
        opening = [m for t in OPENINGS for m in _pattern(t).finditer(text)]
        assert len(opening) == 1 and opening[0].group("site") == site
        assert opening[0].start() < len(paragraphs[0])  # in the first paragraph
        closing = [t for v, ts in CLOSINGS.items() for t in ts if _pattern(t).search(text)]
        assert len(closing) == 1 and closing[0] in CLOSINGS[verdict]
        assert _pattern(closing[0]).search(paragraphs[-1])  # in the last paragraph
        assert 850 <= len(text.split()) <= 3400


def test_short_rows_are_seeded_and_labelled():
    first, second = list(short_rows(50, seed=1)), list(short_rows(50, seed=1))
    assert first == second and first != list(short_rows(50, seed=2))
    for text, label in first:
        site, verdict = label.split("_")
        assert f" {site} " in text and 15 <= len(text.split()) <= 80
    buffer = io.StringIO()
    csv.writer(buffer).writerows(first)
    assert len(buffer.getvalue()) < 50 * 400


def test_the_wheel_ships_the_csv():
    package_data = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    patterns = package_data["package-data"]["effstudio.tasks"]
    assert any(SAMPLE_DOCUMENTS.relative_to(SAMPLE_DOCUMENTS.parents[1]).match(p) for p in patterns)


def test_the_task_reads_the_sample_when_no_path_is_set():  # conftest gives the test an empty cache
    task = TextClassTask(TextClassConfig(vocab_size=2000, max_length=256, truncation="head+tail"))
    assert task.source()["path"] == str(SAMPLE_DOCUMENTS)
    assert task.label_names == sorted(f"{site}_{verdict}" for site, verdict in CLASS_WEIGHTS)
    sizes = {name: len(task.split(name).targets) for name in ("train", "val", "test")}
    assert sum(sizes.values()) == 350 and sizes["val"] >= 30 and sizes["test"] >= 30
    lengths = task.lengths("train")
    assert lengths.min() >= 1000 and lengths.max() <= 4200  # 1-4k tokens before truncation
    example = task.examples("val", 1)[0]
    assert len(example.ids) == 256 and example.tokens[0] == "[CLS]"
    pieces = {piece.lstrip("▁Ġ") for piece in task.decode(task.split("train").inputs[:, :40].flatten().tolist())}
    assert {"mill", "quarry", "council"} <= pieces  # whole words of the opening lines are pieces of their own
