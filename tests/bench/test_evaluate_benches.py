"""`bench evaluate` and `bench lra` at tiny sizes: their rows have the documented keys and sane values."""

import json

from effstudio.cli import main


def test_bench_evaluate_prints_eval_and_train_throughput_and_their_ratio(capsys, one_thread):
    assert main(["bench", "evaluate", "--examples", "16", "--max-length", "16", "--repeats", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert {"eval_examples_per_s", "train_examples_per_s", "ratio"} <= set(result)
    assert result["eval_examples_per_s"] > 0 and result["train_examples_per_s"] > 0
    assert abs(result["ratio"] - result["eval_examples_per_s"] / result["train_examples_per_s"]) < 0.02 * result["ratio"]


def test_bench_lra_gives_one_row_per_kind_beside_the_paper(capsys, one_thread):
    assert main(["bench", "lra", "--steps", "1", "--kinds", "sdpa,performer", "--max-length", "16",
                 "--train-size", "10", "--test-size", "4", "--d-model", "16", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [row["kind"] for row in result["rows"]] == ["sdpa", "performer"]
    for row in result["rows"]:
        assert set(row) == {"kind", "steps", "test_accuracy", "seconds"}
        assert row["steps"] == 1 and 0 <= row["test_accuracy"] <= 1 and row["seconds"] > 0
    assert result["paper_listops"]["performer"] == 18.01


def test_bench_lra_refuses_an_unknown_kind(capsys):
    assert main(["bench", "lra", "--kinds", "sdpa,nonsense", "--json"]) == 2
    assert "nonsense" in capsys.readouterr().err
