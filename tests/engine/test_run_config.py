import pytest

from effstudio.config import ConfigError
from effstudio.engine.run_config import RunConfig


def test_defaults_and_overrides_by_section_and_bare_name():
    config = RunConfig.create("transformer", "listops", ["model.d_model=64", "lr=3e-4", "train.steps=7"])
    assert config.model.d_model == 64
    assert config.train.lr == pytest.approx(3e-4)
    assert config.train.steps == 7
    assert config.attention_kind == "sdpa"


@pytest.mark.parametrize(
    ("override", "field", "words"),
    [
        ("model.d_model=abc", "model.d_model", "expected int"),
        ("train.lr=-1", "train.lr", ">= 0"),
        ("train.device=tpu", "train.device", "must be one of"),
        ("model.nonsense=1", "model.nonsense", "unknown setting"),
        ("nonsense=1", "nonsense", "unknown setting"),
        ("seed=1", "seed", "ambiguous"),
        ("model.attention=nope", "model.attention", "must be one of"),
        ("train.compile=maybe", "train.compile", "true or false"),
        ("weird", "weird", "key=value"),
    ],
)
def test_invalid_values_name_the_field(override, field, words):
    with pytest.raises(ConfigError) as caught:
        RunConfig.create("transformer", "listops", [override])
    assert caught.value.field == field
    assert words in caught.value.message


def test_cross_field_check_names_the_field():
    with pytest.raises(ConfigError) as caught:
        RunConfig.create("transformer", "listops", ["train.batch_size=10", "train.grad_accum=3"])
    assert caught.value.field == "train.grad_accum"


def test_changing_attention_kind_resets_its_settings():
    config = RunConfig.create("transformer", "listops", ["model.attention=full"])
    assert config.attention_kind == "full"
    assert type(config.attention).__name__ == "FullAttentionConfig"


def test_toml_round_trip(tmp_path):
    config = RunConfig.create("transformer", "copy", ["model.layers=3", "task.mode=reverse", "train.lr=0.002"])
    path = tmp_path / "run.toml"
    path.write_text(config.to_toml())
    assert RunConfig.from_toml(path) == config


def test_toml_with_unknown_key_is_refused(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('[model]\ntype = "transformer"\nwidth = 3\n[task]\nname = "copy"\n')
    with pytest.raises(ConfigError) as caught:
        RunConfig.from_toml(path)
    assert caught.value.field == "model.width"


def test_broken_toml_gives_a_clear_message(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text("[model\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        RunConfig.from_toml(path)


def test_data_order_is_a_function_of_the_step():
    from effstudio.engine.data import MicroBatchIndices

    whole = iter(MicroBatchIndices(100, 32, 2, seed=3))
    batches = [next(whole) for _ in range(10)]
    resumed = iter(MicroBatchIndices(100, 32, 2, seed=3, start=6))
    for expected in batches[6:]:
        assert next(resumed).tolist() == expected.tolist()
    # each epoch of 3 full steps uses distinct examples
    first_epoch = set(sum((b.tolist() for b in batches[:6]), []))
    assert len(first_epoch) == 96


def test_ranks_split_each_global_batch():
    from effstudio.engine.data import MicroBatchIndices

    single = next(iter(MicroBatchIndices(64, 16, 1, seed=0)))
    ranks = [next(iter(MicroBatchIndices(64, 16, 1, seed=0, rank=r, world_size=2))) for r in (0, 1)]
    assert sorted(ranks[0].tolist() + ranks[1].tolist()) == sorted(single.tolist())
    assert len(ranks[0]) == len(ranks[1]) == 8


def test_a_path_setting_a_file_names_is_relative_to_the_file_and_remembers_it(tmp_path, monkeypatch):
    from effstudio.paths import _allowed

    monkeypatch.setattr("effstudio.paths._allowed", set(_allowed))
    folder = tmp_path / "shared"
    folder.mkdir()
    (folder / "run.toml").write_text('[model]\ntype = "transformer"\n[task]\nname = "charlm"\npath = "t.txt"\n',
                                     encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    config = RunConfig.from_toml(folder / "run.toml")
    assert config.task.path == str(folder / "t.txt") and config.sources == {"task.path": str(folder / "run.toml")}
    config.check_paths()  # inside its folder
    outside = config.with_overrides({"model.d_model": 64}).with_overrides({})
    assert outside.sources == config.sources  # other settings keep where the path came from
    bad = RunConfig.from_dict({"model": {"type": "transformer"}, "task": {"name": "charlm", "path": "../t.txt"}},
                              named_by=folder / "run.toml")
    with pytest.raises(ConfigError) as caught:
        bad.check_paths()
    assert caught.value.field == "task.path" and "--set task.path=" in caught.value.message
    typed = bad.with_overrides(["task.path=../t.txt"])  # the user's own value: no file named it
    assert typed.sources == {} and typed == bad.with_overrides(["task.path=../t.txt"])
    typed.check_paths()
    assert typed.with_absolute_paths().task.path == str(tmp_path.parent / "t.txt")


@pytest.mark.parametrize(("override", "suggested"), [
    ("dmodel=64", "'model.d_model'"),            # a bare name: suggested with its section
    ("model.dmodel=64", "'model.d_model'"),      # a qualified name
    ("train.lrr=0.1", "'train.lr'"),
    ("headz=2", "'model.heads'"),
])
def test_a_misspelt_setting_suggests_the_close_qualified_names(override, suggested):
    with pytest.raises(ConfigError) as caught:
        RunConfig.create("transformer", "listops", [override])
    assert "unknown setting (did you mean " + suggested in str(caught.value)


def test_a_name_close_to_nothing_suggests_nothing():
    with pytest.raises(ConfigError) as caught:
        RunConfig.create("transformer", "listops", ["zzzzqq=1"])
    assert "did you mean" not in str(caught.value)
