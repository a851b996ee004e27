"""Hostile model files through every reader: one line naming the file and the limit, the right exit code,
no traceback, nothing executed, nothing written; and the limits hold without reading what a file declares."""

from __future__ import annotations

import json
import pickle
import re
import resource
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from effstudio import read_limits
from effstudio.cli import main
from effstudio.engine.pickle_scan import python3_name
from effstudio.inspect import InspectError, open_model
from effstudio.inspect.stats import all_stats
from tests.hostile import reader_cases
from tests.hostile.reader_cases import CASES, MARKER

# what each case's one-line message must say (the file's name is checked separately)
EXPECTED = {
    "st_overlapping_offsets": r"tensors '[^']+' and '[^']+' overlap: bytes 0-\d+ of the data belong to both",
    "st_duplicate_names": r"the header names '[^']+' twice",
    "st_shape_true": r"has an invalid shape \[true, true\]",
    "st_negative_dim": r"has an invalid shape \[-1\]",
    "st_count_disagrees": r"needs \d+ bytes but its offsets span \d+",
    "st_header_not_object": r"the header is valid JSON but not an object \(it is a list\)",
    "st_header_too_large": r"the header claims 2,000,000,000 bytes, more than the 100,000,000",
    "st_deep_header": r"the header is nested more than 64 levels deep",
    "pt_stride0_view": r"a view of 1,000,000,000,000 elements \(strides \[0\]\) repeating a storage of 1; .*"
                       r"MAX_REPEATED_VIEW_ELEMENTS",
    "pt_repeated_rows": r"a view of 4,000,000,000 elements .* repeating a storage of 4; .*MAX_REPEATED_VIEW_ELEMENTS",
    "pt_view_beyond_storage": r"refused: a tensor's shape, strides or offset reach beyond the bytes stored for it",
    "pt_misdirected_pickle": r"refused: unpickling this file would call os\.system\.",
    "pt_pickle_in_other_folder": r"refused: unpickling this file would call os\.system\.",
    "pt_python2_names": r"would call subprocess\.getoutput, builtins\.eval\.",
    "pt_memo_hidden_global": r"would call os\.system\.",
    "pt_pickle_declares_4gib": r"data\.pkl declares 4,294,967,040 bytes, more than the 33,554,432 effstudio reads "
                               r"\(MAX_PICKLE_BYTES\)",
    "npz_bomb_4gib": r"weights\.npy would inflate to 4,294,967,168 bytes, more than the 1,073,741,824 effstudio "
                     r"decompresses \(MAX_INFLATED_BYTES\)",
    "npz_header_disagrees": r"describes 4,000,000,000,000 bytes of data but its zip entry holds 16",
    "onnx_external_parent": r"tensor 'dense.weight' keeps its data in '\.\./secret\.bin', which climbs out of the "
                            r"model's folder",
    "onnx_external_absolute": r"tensor 'dense.weight' keeps its data in '/.*secret\.bin', which is an absolute path",
    "onnx_external_symlink": r"tensor 'dense.weight' keeps its data in 'model\.onnx\.data', which leads outside "
                             r"the folder .* \(to .*secret\.bin\)",
    "onnx_external_missing": r"keeps its data in 'model\.onnx\.data', which is missing from the model's folder",
    "onnx_external_beyond_end": r"which holds \d+ bytes, but the tensor needs bytes 1,048,576-",
    "onnx_metadata_not_json": r"metadata 'config' is not valid JSON: ",
    "onnx_metadata_not_object": r"metadata 'config' is JSON but not an object \(it is list\)",
    "pt_calls_tensor_constructor": r"would call torch\.Tensor\(\.\.\.\) \(an allowed value, but calling it builds "
                                   r"data the file does not hold\)",
    "pt_calls_bytearray": r"would call builtins\.bytearray\(\.\.\.\) \(an allowed value",
    "pt_rebuild_from_type_calls_tensor": r"would call torch\.Tensor\(\.\.\.\) \(an allowed value",
    "pt_newobj_ex_storage": r"would call torch\.storage\.UntypedStorage\(\.\.\.\) \(an allowed value",
    "pt_build_on_a_class": r"would call a BUILD that sets attributes of torch\.Tensor\.",
    "pt_getattr_chain": r"would call builtins\.getattr, torch\.serialization, a call of an object the pickle built",
    "pt_attrgetter": r"would call operator\.attrgetter, os\.path, a call of an object the pickle built",
    "pt_functools_partial": r"would call functools\.partial, os\.system, a call of an object the pickle built",
    "pt_copyreg_reconstructor": r"would call copyreg\._reconstructor, subprocess\.Popen, builtins\.object\.",
    "pt_numpy_reconstruct": r"would call numpy\.core\.multiarray\._reconstruct, os\.system\.",
    "pt_protocol0_inst": r"would call os\.system\.",
    "pt_uppercase_data_pkl": r"would call os\.system\.",
    "pt_data_pkl_is_a_folder": r"a zip archive without a/data\.pkl, the pickle PyTorch would load",
    "pt_thousands_of_pickles": r"the pickle a/extra/\d+\.pkl declares [\d,]+ bytes \(with the pickles before it, "
                               r"33,5\d\d,\d\d\d\), more than the 33,554,432 effstudio reads \(MAX_PICKLE_BYTES\)",
    "pt_storage_larger_than_record": r"refused: storage '0' declares 4,000 bytes but its record long_storage/data/0 "
                                     r"holds 4",
    "state_deflated_pickle": r"the pickle checkpoint\.state/data\.pkl declares 41,943,\d+ bytes, more than the "
                             r"33,554,432 effstudio reads \(MAX_PICKLE_BYTES\)",
    "state_calls_bytearray": r"would call builtins\.bytearray\(\.\.\.\) \(an allowed value",
    "state_runs_shell": r"would call os\.system\.",
    "state_legacy_protocol0": r"would call os\.system\.",
    "state_storage_declares_10e12": r"refused: storage '0' declares 1,000,000,000,000 bytes but its record "
                                    r"checkpoint\.state/data/0 holds 4",
    "state_storage_zip_bomb": r"refused: checkpoint\.state/data/0 would inflate to 3,221,225,472 bytes, more than the "
                              r"1,073,741,824 effstudio decompresses \(MAX_INFLATED_BYTES\)",
    "st_million_empty_tensors": r"the header describes 250,000 tensors, more than the 200,000 effstudio reads in one "
                                r"file \(MAX_TENSORS\)",
    "npy_negative_shape": r"the header's shape \(-4, -4\) has a negative dimension",
    "npz_pickled_member": r"no array effstudio reads: skipped 'evil': it holds Python objects \(a pickle\)",
    "npz_one_member_listed_500_times": r"refused: the archive holds w\.npy twice; a reader would see only one",
    "npz_overlapping_members": r"refused: the members a\.npy and b\.npy overlap in the file: their bytes would be "
                               r"read twice",
    "folder_weights_link_out": r"model\.safetensors in .*/model leads outside the folder .*/model \(to "
                               r".*/outside/secret\.safetensors\); refused, nothing of it was read",
    "folder_weights_hard_link": r"model\.safetensors in .*/model is a hard link \(2 names for one file",
    "folder_index_parent": r"shard '\.\./outside/secret\.safetensors' leads outside the folder .*/model",
    "folder_index_absolute": r"shard '/.*/outside/secret\.safetensors' leads outside the folder .*/model",
    "folder_index_shard_link_out": r"shard 'model-00001-of-00001\.safetensors' leads outside the folder .*/model \(to "
                                   r".*/outside/secret\.safetensors\)",
    "folder_bin_index_parent": r"pytorch_model\.bin\.index\.json: shard '\.\./outside/secret\.safetensors' leads "
                               r"outside the folder",
    "folder_index_is_a_link_out": r"model\.safetensors\.index\.json in .*/model leads outside the folder",
    "onnx_external_hard_link": r"keeps its data in 'model\.onnx\.data', which is a hard link \(2 names for one file",
    "onnx_external_backslashes": r"keeps its data in '\.\.(\\)+secret\.bin', which climbs out of the model's folder",
}
# the file opens, and the named tensor's statistics are refused (exit 1, the rest of the file is shown)
TENSOR_REFUSED = {"pt_stride0_view", "pt_repeated_rows", "npz_bomb_4gib"}
# the file opens, a note says the effstudio metadata is unusable (exit 0), and jobs that need it refuse it
METADATA_NOTE = {"onnx_metadata_not_json", "onnx_metadata_not_object"}


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path_factory, monkeypatch):
    root = tmp_path_factory.getbasetemp()
    monkeypatch.setenv("EFFSTUDIO_DATA_DIR", str(root / "data"))
    monkeypatch.setenv("EFFSTUDIO_CACHE_DIR", str(root / "cache"))


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """Every case, made once: name -> (path, kind, folder)."""
    root = tmp_path_factory.mktemp("hostile")
    return {name: (make(root / name), kind, root / name) for name, make, kind in CASES}


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    return reader_cases.tiny_checkpoint(tmp_path_factory.mktemp("good") / "good.safetensors")


def error_lines(err: str) -> list[str]:
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err, err
    assert all(line.startswith("effstudio: error: ") for line in lines), lines
    return lines


def test_every_case_has_an_expected_message():
    assert set(EXPECTED) == {name for name, _, _ in CASES}


@pytest.mark.parametrize("name", [name for name, _, _ in CASES])
def test_inspect(name, made, capsys):
    path, _, folder = made[name]
    started = time.perf_counter()
    code = main(["inspect", str(path)])
    captured = capsys.readouterr()
    assert time.perf_counter() - started < 20
    lines = error_lines(captured.err)
    if name in METADATA_NOTE:
        assert code == 0 and not lines
        assert "effstudio metadata cannot be used" in captured.out
    else:
        assert code == 1 and len(lines) == 1, lines
        assert path.name in lines[0]
        assert re.search(EXPECTED[name], lines[0]), lines[0]
    if name in TENSOR_REFUSED:  # the summary is still shown
        assert captured.out.startswith(str(path))
    assert not (folder / MARKER).exists()


@pytest.mark.parametrize("name", [name for name, _, _ in CASES if name not in METADATA_NOTE])
def test_inspect_diff(name, made, good, capsys):
    path, _, folder = made[name]
    # a refused view is only read when both files hold the tensor: diff such a file with itself
    base = path if name in TENSOR_REFUSED else good
    code = main(["inspect", str(base), "--diff", str(path), "--json"])
    captured = capsys.readouterr()
    lines = error_lines(captured.err)
    assert code == 1 and len(lines) == 1 and re.search(EXPECTED[name], lines[0]), lines
    assert re.search(EXPECTED[name], json.dumps(json.loads(captured.out), ensure_ascii=False))
    assert not (folder / MARKER).exists()


@pytest.mark.parametrize("name", [name for name, _, kind in CASES if kind == "checkpoint"])
def test_checkpoint_loaders_give_the_inspector_verdict(name, made, capsys, tmp_path):
    """inspect, read_info (resume, init, compare, prune...), load_weights, compare and prune: one message."""
    from effstudio.engine.checkpoint import CheckpointError, load_weights, read_info

    path, _, _ = made[name]
    with pytest.raises(InspectError) as inspected:
        open_model(path)
    message = str(inspected.value)
    assert re.search(EXPECTED[name], message) and message.startswith(path.name)
    with pytest.raises(CheckpointError) as info:
        read_info(path)
    assert str(info.value) == message
    with pytest.raises(CheckpointError) as loading:
        load_weights(torch.nn.Linear(2, 2), path)
    assert str(loading.value) == message
    out = tmp_path / "pruned.safetensors"
    for argv in (["compare", str(path), "--repeats", "1", "--json"],
                 ["prune", str(path), "--method", "heads", "--amount", "0.5", "--out", str(out)],
                 ["quantize", str(path), "--method", "fp16", "--out", str(out)]):
        code = main(argv)
        lines = error_lines(capsys.readouterr().err)
        assert code == 2 and lines == [f"effstudio: error: {message}"], (argv[0], lines)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", [name for name, _, kind in CASES if kind == "onnx"])
def test_compare_refuses_onnx_before_onnxruntime_reads_it(name, made, capsys, monkeypatch):
    import onnxruntime

    from effstudio.compress.export import onnx_params, session
    from effstudio.engine.loading import CompressError

    def never(*args, **kwargs):
        raise AssertionError("onnxruntime was given a refused model")

    monkeypatch.setattr(onnxruntime, "InferenceSession", never)
    path, _, folder = made[name]
    code = main(["compare", str(path), "--repeats", "1"])
    lines = error_lines(capsys.readouterr().err)
    assert code == 2 and len(lines) == 1 and re.search(EXPECTED[name], lines[0]), lines
    assert path.name in lines[0]
    if name not in METADATA_NOTE:  # the one check guards every other way in as well
        for reader in (session, onnx_params):
            with pytest.raises(CompressError, match=EXPECTED[name]):
                reader(path)


def test_a_good_external_data_model_still_opens_everywhere(tmp_path):
    from effstudio.compress.export import onnx_params
    from effstudio.engine.loading import read_onnx_metadata

    path = reader_cases.onnx_with_metadata(tmp_path / "ok" / "model.onnx", external=True)
    inspected = open_model(path)
    assert inspected.tensor("dense.weight").raw().shape == (8, 4)
    assert onnx_params(path) == 8 * 4 + 4 + 4
    assert json.loads(read_onnx_metadata(path)["config"])["model"]["d_model"] == 16


@pytest.mark.parametrize("name", ["pt_misdirected_pickle", "pt_python2_names", "pt_memo_hidden_global",
                                  "pt_stride0_view", "npz_bomb_4gib", "st_shape_true", "onnx_external_symlink"])
def test_a_real_process_prints_one_line_and_runs_nothing(name, made):
    path, _, folder = made[name]
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "effstudio", "inspect", str(path)], capture_output=True,
                            text=True, timeout=120)
    assert time.perf_counter() - started < 60
    assert result.returncode == 1
    lines = error_lines(result.stderr)
    assert len(lines) == 1 and re.search(EXPECTED[name], lines[0]), result.stderr
    assert not (folder / MARKER).exists()


# ------------------------------------------------------------------ the limits themselves
def test_the_4gib_npz_member_is_refused_before_inflating(made):
    path, _, _ = made["npz_bomb_4gib"]
    assert path.stat().st_size < 5_000_000
    with zipfile.ZipFile(path) as archive:
        assert archive.infolist()[0].file_size > 4_000_000_000  # what it declares, and really inflates to
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    stats = all_stats(open_model(path))
    assert time.perf_counter() - started < 2
    assert "MAX_INFLATED_BYTES" in stats["weights"]
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000  # kB: nothing was inflated


def test_a_real_zip_bomb_under_the_size_cap_is_refused_by_its_ratio(tmp_path, monkeypatch):
    path = tmp_path / "zeros.npz"
    np.savez_compressed(path, zeros=np.zeros(4 << 20, dtype=np.float32), small=np.ones(10, dtype=np.float32))
    monkeypatch.setattr(read_limits, "RATIO_CHECKED_ABOVE", 1 << 20)
    stats = all_stats(open_model(path))
    assert "MAX_INFLATE_RATIO" in stats["zeros"] and "zeros.npy would inflate" in stats["zeros"]
    assert stats["small"].mean == 1.0
    monkeypatch.setattr(read_limits, "RATIO_CHECKED_ABOVE", 64 << 20)  # the default: a 16 MB array of zeros is fine
    assert all_stats(open_model(path))["zeros"].sparsity == 100.0


def test_many_small_bombs_share_one_ratio_budget(tmp_path, monkeypatch):
    path = tmp_path / "many.npz"
    np.savez_compressed(path, **{f"z{i}": np.zeros(1 << 20, dtype=np.float32) for i in range(8)})  # 4 MiB each
    monkeypatch.setattr(read_limits, "RATIO_CHECKED_ABOVE", 14 << 20)  # above each member, below all of them
    stats = all_stats(open_model(path))
    assert [name for name, value in stats.items() if not isinstance(value, str)] == ["z0", "z1", "z2"]
    assert "z3.npy with the members before it would inflate" in stats["z3"]
    assert all("MAX_INFLATE_RATIO" in stats[f"z{i}"] for i in range(3, 8))


def test_a_compressed_member_is_read_into_the_declared_size(tmp_path):
    path = tmp_path / "arrays.npz"
    values = np.random.default_rng(0).standard_normal((300, 7)).astype(np.float32)
    np.savez_compressed(path, f=np.asfortranarray(values))
    raw = open_model(path).tensor("f").raw()
    np.testing.assert_array_equal(raw, values)


def deflated_checkpoint(path: Path, pad: int) -> Path:
    """A torch zip checkpoint whose data.pkl (padded with a long string) is stored deflated."""
    torch.save({"weight": torch.arange(6.0), "note": "x" * pad}, path)
    with zipfile.ZipFile(path) as archive:
        members = [(info.filename, archive.read(info)) for info in archive.infolist()]
    return reader_cases.write_torch_zip(path, members, compress_pickles=True)


def test_a_deflated_pickle_over_the_limit_is_refused_before_it_is_inflated(tmp_path, monkeypatch):
    path = deflated_checkpoint(tmp_path / "padded.pt", pad=300_000)
    with zipfile.ZipFile(path) as archive:
        pickled = next(info for info in archive.infolist() if info.filename.endswith("data.pkl"))
    assert pickled.compress_size < 10_000 < 300_000 < pickled.file_size
    opened = []
    original = zipfile.ZipFile.open
    monkeypatch.setattr(zipfile.ZipFile, "open", lambda self, name, *a, **k: opened.append(
        getattr(name, "filename", name)) or original(self, name, *a, **k))
    monkeypatch.setattr(read_limits, "MAX_PICKLE_BYTES", 100_000)
    with pytest.raises(InspectError, match=r"data\.pkl declares 300,\d+ bytes, more than the 100,000 effstudio "
                                           r"reads \(MAX_PICKLE_BYTES\)"):
        open_model(path)
    assert not any(name.endswith(".pkl") for name in opened)
    monkeypatch.setattr(read_limits, "MAX_PICKLE_BYTES", 32 << 20)
    inspected = open_model(path)  # the same file within the limit
    assert inspected.tensor("weight").raw().tolist() == [0, 1, 2, 3, 4, 5]


def test_a_pickle_without_a_declared_size_is_read_only_up_to_the_limit(tmp_path, monkeypatch):
    path = tmp_path / "long.pt"
    path.write_bytes(pickle.dumps({"values": list(range(200_000))}, protocol=4))
    monkeypatch.setattr(read_limits, "MAX_PICKLE_BYTES", 50_000)
    with pytest.raises(InspectError, match=r"refused: the pickle is longer than 50,000 bytes, the most effstudio "
                                           r"reads \(MAX_PICKLE_BYTES\)"):
        open_model(path)


def test_views_that_repeat_their_storage_are_read_within_the_cap(tmp_path, monkeypatch):
    path = tmp_path / "expanded.pt"
    torch.save({"row": torch.tensor([1.0, 2.0, 3.0]).expand(1000, 3), "plain": torch.ones(4)}, path)
    stats = all_stats(open_model(path))
    assert stats["row"].mean == pytest.approx(2.0) and stats["row"].min == 1.0
    monkeypatch.setattr(read_limits, "MAX_REPEATED_VIEW_ELEMENTS", 2999)
    stats = all_stats(open_model(path))
    assert "a view of 3,000 elements (strides [0, 1]) repeating a storage of 3" in stats["row"]
    assert stats["plain"].mean == 1.0


def test_many_repeating_views_share_one_budget(tmp_path, monkeypatch):
    """Ten thousand views just under the limit would add up to hours: the limit is for the whole file."""
    one = torch.ones(1)
    path = tmp_path / "many.pt"
    torch.save({f"v{i}": one.expand(400) for i in range(10)}, path)
    monkeypatch.setattr(read_limits, "MAX_REPEATED_VIEW_ELEMENTS", 1000)
    stats = all_stats(open_model(path))
    assert [name for name, value in stats.items() if not isinstance(value, str)] == ["v0", "v1"]
    assert "(with the 800 of such views before it)" in stats["v2"] and "MAX_REPEATED_VIEW_ELEMENTS" in stats["v9"]


def test_every_pickle_member_is_scanned_and_torchs_own_must_exist(tmp_path):
    marker = tmp_path / MARKER
    evil = pickle.dumps({"w": reader_cases._RunsShell(marker)}, protocol=2)
    benign = reader_cases.torch_pickle({"w": reader_cases._Rebuild(reader_cases._StorageRef("0", 1), 0, (1,), (1,))})
    storage = [("a/byteorder", b"little"), ("a/data/0", b"\0\0\x80?"), ("a/version", b"3\n")]
    evil_extra = reader_cases.write_torch_zip(tmp_path / "extra.pt",
                                              [("a/data.pkl", benign), ("a/constants2.pkl", evil), *storage])
    with pytest.raises(InspectError, match=r"would call os\.system"):
        open_model(evil_extra)
    without = reader_cases.write_torch_zip(tmp_path / "without.pt", [("a/xdata.pkl", benign), *storage])
    with pytest.raises(InspectError, match=r"a zip archive without a/data\.pkl, the pickle PyTorch would load"):
        open_model(without)
    flat = reader_cases.write_torch_zip(tmp_path / "flat.pt", [("data.pkl", benign)])
    with pytest.raises(InspectError, match=r"its first entry 'data\.pkl' is not inside a folder"):
        open_model(flat)
    ok = reader_cases.write_torch_zip(tmp_path / "ok.pt", [("a/data.pkl", benign), *storage])
    assert open_model(ok).tensor("w").raw().tolist() == [1.0]
    assert not marker.exists()


def test_python2_names_are_mapped_only_where_the_unpickler_maps_them():
    assert python3_name("__builtin__", "eval", 2) == ("builtins", "eval")
    assert python3_name("__builtin__", "xrange", 2) == ("builtins", "range")
    assert python3_name("commands", "getoutput", 0) == ("subprocess", "getoutput")
    assert python3_name("commands", "getoutput", 4) == ("commands", "getoutput")  # protocol 3+: no fix_imports


def test_a_config_json_beside_the_weights_is_bounded(tmp_path):
    folder = tmp_path / "folder"
    reader_cases.tiny_checkpoint(folder / "model.safetensors")
    (folder / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    inspected = open_model(folder)
    assert any("config.json is nested deeper than 64 levels" in note for note in inspected.notes), inspected.notes
    (folder / "model.safetensors.index.json").write_text('{"weight_map": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(InspectError, match="model.safetensors.index.json is nested deeper than 64 levels"):
        open_model(folder)
