"""What the hostile reader cases of the second round must not break, and the outcomes that are specific:
real files with every allowed call still open, resume bounds its training state like the inspector, a
Hugging Face cache snapshot (links into its blobs by design) still opens, a config.json that leads out is
never read, and the per-file limits hold for every archive kind."""

from __future__ import annotations

import json
import resource
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from effstudio import read_limits
from effstudio.cli import main
from effstudio.engine import checkpoint as ckpt
from effstudio.engine.pickle_scan import disallowed, scan_pickles
from effstudio.inspect import InspectError, open_model
from tests.hostile import reader_cases


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("EFFSTUDIO_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("EFFSTUDIO_CACHE_DIR", str(tmp_path / "cache"))


def test_real_files_with_every_call_a_checkpoint_makes_still_open(tmp_path):
    """Parameters, a tensor with Python attributes (_rebuild_from_type_v2), an optimizer state, sizes,
    dtypes and devices: all built by torch.save, all accepted by the call check."""
    layer = torch.nn.Linear(3, 2)
    noted = torch.arange(4.0)
    noted.note = "kept"
    optimizer = torch.optim.AdamW(layer.parameters())
    layer(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    path = tmp_path / "everything.pt"
    torch.save({"params": list(layer.parameters()), "noted": noted, "optimizer": optimizer.state_dict(),
                "size": torch.Size([2, 3]), "dtype": torch.bfloat16, "device": torch.device("cpu"),
                "state_dict": layer.state_dict()}, path)
    with zipfile.ZipFile(path) as archive:
        name = next(n for n in archive.namelist() if n.endswith("data.pkl"))
        with archive.open(name) as stream:
            scan = scan_pickles(stream, max_pickles=1)
    assert ("torch._tensor", "_rebuild_from_type_v2") in scan.calls and disallowed(scan) == []
    inspected = open_model(path)
    assert inspected.tensor("state_dict.weight").raw().shape == (2, 3)
    assert inspected.tensor("noted").raw().tolist() == [0.0, 1.0, 2.0, 3.0]


def test_resume_reads_a_state_within_the_limits_and_refuses_one_beyond(tmp_path, capsys, monkeypatch):
    """One mechanism: the limit the inspector keeps (monkeypatched small here) is the one resume keeps."""
    from tests.hostile.checkpoint_cases import save_pair

    weights = save_pair(tmp_path / "run", 3)
    size = zipfile.ZipFile(ckpt.state_path(weights)).infolist()[0].file_size  # data.pkl comes first
    monkeypatch.setattr(read_limits, "MAX_PICKLE_BYTES", size - 1)
    with pytest.raises(ckpt.CheckpointError, match=r"checkpoint\.state\.pt: refused: the pickle "
                                                    r"[^ ]+/data\.pkl declares [\d,]+ bytes.*"
                                                    r"\(MAX_PICKLE_BYTES\)"):
        ckpt.resume_point(weights)
    with pytest.raises(InspectError, match=r"\(MAX_PICKLE_BYTES\)"):
        open_model(ckpt.state_path(weights))
    monkeypatch.setattr(read_limits, "MAX_PICKLE_BYTES", size)
    assert ckpt.resume_point(weights).step == 3


def test_a_bytearray_bomb_in_a_training_state_allocates_nothing(tmp_path):
    state = reader_cases.make_state_calls_bytearray(tmp_path / "case")
    assert state.stat().st_size < 1000
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    with pytest.raises(ckpt.CheckpointError, match=r"builtins\.bytearray\(\.\.\.\)"):
        ckpt.resume_point(state.with_name("checkpoint.safetensors"))
    assert time.perf_counter() - started < 2
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000  # kB


def test_a_config_json_that_leads_out_is_not_read(tmp_path, capsys):
    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps({"password": "hunter2"}))
    model = tmp_path / "model"
    reader_cases.tiny_checkpoint(model / "model.safetensors")
    (model / "config.json").symlink_to(secret)
    assert main(["inspect", str(model), "--no-stats", "--json"]) == 0
    out = capsys.readouterr().out
    assert "hunter2" not in out
    notes = json.loads(out)["notes"]
    assert any(f"config.json in {model} leads outside the folder" in note for note in notes), notes


def test_a_hugging_face_cache_snapshot_still_opens(tmp_path):
    """snapshots/<rev>/ holds links into ../../blobs/ by design: those are the folder's own files."""
    repo = tmp_path / "models--org--tiny"
    blobs, snapshot = repo / "blobs", repo / "snapshots" / "0123abc"
    blobs.mkdir(parents=True)
    snapshot.mkdir(parents=True)
    reader_cases.tiny_checkpoint(blobs / "aa11")
    (blobs / "bb22").write_text(json.dumps({"model_type": "bert", "hidden_size": 16}))
    (snapshot / "model.safetensors").symlink_to("../../blobs/aa11")
    (snapshot / "config.json").symlink_to("../../blobs/bb22")
    inspected = open_model(snapshot)
    assert inspected.config == {"model_type": "bert", "hidden_size": 16}
    assert inspected.tensor("embed.weight").raw().shape == (14, 16)
    # a blobs folder that is itself a link is not the cache's own
    (repo / "elsewhere").mkdir()
    blobs.rename(repo / "elsewhere" / "blobs")
    blobs.symlink_to(repo / "elsewhere" / "blobs")
    with pytest.raises(InspectError, match=r"model\.safetensors in .* leads outside the folder"):
        open_model(snapshot)


def test_too_many_members_are_refused_in_every_archive_kind(tmp_path, monkeypatch):
    monkeypatch.setattr(read_limits, "MAX_TENSORS", 5)
    npz = tmp_path / "many.npz"
    np.savez(npz, **{f"a{i}": np.ones(2, dtype=np.float32) for i in range(6)})
    with pytest.raises(InspectError, match=r"the archive holds 6 members, more than the 5 .*\(MAX_TENSORS\)"):
        open_model(npz)
    pt = tmp_path / "many.pt"
    torch.save({f"t{i}": torch.ones(1) for i in range(6)}, pt)  # data.pkl, 6 storages, byteorder, version...
    with pytest.raises(InspectError, match=r"members, more than the 5 .*\(MAX_TENSORS\)"):
        open_model(pt)
    monkeypatch.setattr(read_limits, "MAX_TENSORS", 200_000)
    assert len(open_model(npz).tensors) == 6 and len(open_model(pt).tensors) == 6


def test_the_scan_reports_what_each_calling_opcode_calls():
    """REDUCE, NEWOBJ, NEWOBJ_EX, OBJ and INST each call; an allowed value called is named with (...)."""
    tensor = b"ctorch\nTensor\n"
    size = b"K\x04\x85"
    bodies = {
        "REDUCE": b"\x80\x02" + tensor + size + b"R.",
        "NEWOBJ": b"\x80\x02" + tensor + size + b"\x81.",
        "NEWOBJ_EX": b"\x80\x04" + tensor + size + b"}\x92.",
        "OBJ": b"\x80\x02(" + tensor + b"K\x04o.",
        "INST": b"(K\x04itorch\nTensor\n.",
    }
    for opcode, body in bodies.items():
        import io

        assert disallowed(scan_pickles(io.BytesIO(body))) == [
            "torch.Tensor(...) (an allowed value, but calling it builds data the file does not hold)"], opcode


def test_a_pickle_may_name_a_type_as_a_value(tmp_path):
    """Storage classes and dtypes appear as arguments in every checkpoint: naming them is fine."""
    path = tmp_path / "typed.pt"
    torch.save({"w": torch.ones(2, dtype=torch.float16), "kind": torch.float16}, path)
    assert open_model(path).tensor("w").raw().tolist() == [1.0, 1.0]


def test_every_hostile_reader_case_is_refused_in_a_fraction_of_a_second(tmp_path):
    """The bombs are refused on what they declare, not after the work: well under a second each."""
    for name in ("pt_thousands_of_pickles", "st_million_empty_tensors", "state_deflated_pickle"):
        path: Path = dict((n, m) for n, m, _ in reader_cases.CASES)[name](tmp_path / name)
        started = time.perf_counter()
        with pytest.raises(InspectError):
            open_model(path)
        assert time.perf_counter() - started < 1.5, name
