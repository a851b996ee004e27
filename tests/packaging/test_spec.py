"""The PyInstaller spec, the build script and the Windows installer script, checked without building."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGING = ROOT / "packaging"
SPEC = PACKAGING / "effstudio.spec"
ISS = PACKAGING / "windows" / "effstudio.iss"
MODEL_EXTENSIONS = {"safetensors", "onnx", "pt", "pth", "ckpt"}


@pytest.fixture(scope="module")
def spec_tree() -> ast.Module:
    return ast.parse(SPEC.read_text(encoding="utf-8"), filename=str(SPEC))


def calls(tree: ast.Module, name: str) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == name]


def test_spec_parses_and_builds_one_folder(spec_tree):
    for name in ("Analysis", "PYZ", "EXE", "COLLECT", "BUNDLE"):
        assert calls(spec_tree, name), f"the spec has no {name}(...)"
    exe = calls(spec_tree, "EXE")[0]
    keywords = {k.arg: k.value for k in exe.keywords}
    assert isinstance(keywords["exclude_binaries"], ast.Constant) and keywords["exclude_binaries"].value is True


def test_spec_names_the_entry_script_and_data_folders():
    text = SPEC.read_text(encoding="utf-8")
    entry = re.search(r'ENTRY = str\(ROOT / "packaging" / "(\w+\.py)"\)', text)
    assert entry and (PACKAGING / entry.group(1)).is_file()
    assert "effstudio.cli import main" in (PACKAGING / entry.group(1)).read_text(encoding="utf-8")
    for folder in ("icons", "linux"):
        assert f'(str(ROOT / "resources" / "{folder}"), "resources/{folder}")' in text
        assert (ROOT / "resources" / folder).is_dir()
    assert 'copy_metadata("effstudio")' in text  # the registry's entry points
    assert 'collect_submodules("effstudio")' in text


def test_spec_trims_but_keeps_what_the_app_imports():
    source = SPEC.read_text(encoding="utf-8")
    # run the spec's top part (everything before Analysis) to read its lists; PyInstaller's
    # helpers are stubbed, so this runs without PyInstaller installed
    head = source.split("\na = Analysis(")[0]
    head = head.replace("from PyInstaller.utils.hooks import collect_data_files, collect_submodules, copy_metadata",
                        "collect_data_files = collect_submodules = copy_metadata = lambda name: []")
    namespace: dict[str, object] = {"SPECPATH": str(PACKAGING)}
    exec(compile(head, str(SPEC), "exec"), namespace)  # noqa: S102
    excludes, keep = namespace["EXCLUDES"], namespace["keep"]
    for used in ("PySide6.QtCore", "PySide6.QtGui", "PySide6.QtWidgets", "PySide6.QtSvg", "PySide6.QtOpenGL",
                 "PySide6.QtOpenGLWidgets", "PySide6.QtTest", "torch", "torch.onnx", "onnxruntime", "sympy"):
        assert used not in excludes
    assert "PySide6.QtQml" in excludes and "tensorboard" in excludes
    assert not keep(("torch/include/ATen/core.h", "", "DATA"))
    assert not keep(("numpy/_core/tests/test_umath.py", "", "DATA"))
    assert keep(("torch/nn/modules/linear.py", "", "DATA"))  # TorchScript reads torch's sources
    assert keep(("torch/lib/libtorch_cpu.so", "", "BINARY"))
    assert keep(("resources/icons/hicolor/16x16/apps/effstudio.png", "", "DATA"))
    assert keep(("PySide6/Qt/plugins/platforms/libqoffscreen.so", "", "BINARY"))
    assert keep(("torch/bin/torch_shm_manager", "", "BINARY"))  # torch looks for it on import


def test_spec_strips_only_libraries_that_survive_it():
    from fnmatch import fnmatch

    text = SPEC.read_text(encoding="utf-8")
    patterns = ast.literal_eval(re.search(r"^STRIP = (\[.*?\])$", text, flags=re.M | re.S).group(1))
    assert any(fnmatch("torch/lib/libtorch_cpu.so", p) for p in patterns)
    # auditwheel-patched libraries stop loading once stripped
    for patched in ("numpy.libs/libscipy_openblas64_-32a4b2a6.so", "onnxruntime/capi/libonnxruntime.so.1",
                    "pillow.libs/libjpeg-1a2b.so.62"):
        assert not any(fnmatch(patched, p) for p in patterns)
    assert "strip=True," not in text  # PyInstaller's own strip would take every binary


def test_macos_bundle_declares_the_document_types(spec_tree):
    bundle = calls(spec_tree, "BUNDLE")[0]
    keywords = {k.arg for k in bundle.keywords}
    assert {"icon", "bundle_identifier", "info_plist"} <= keywords
    text = SPEC.read_text(encoding="utf-8")
    assert "CFBundleDocumentTypes" in text and "UTImportedTypeDeclarations" in text
    found = set()
    for match in re.finditer(r'\[("[a-z]+"(?:, "[a-z]+")*)\]\),', text):
        found |= set(ast.literal_eval(f"[{match.group(1)}]"))
    assert MODEL_EXTENSIONS <= found


def test_inno_setup_script():
    text = ISS.read_text(encoding="utf-8")
    sections = set(re.findall(r"^\[(\w+)\]", text, flags=re.M))
    assert {"Setup", "Tasks", "Files", "Icons", "Registry", "Run"} <= sections
    assert re.search(r"^AppId=\{\{[0-9A-F-]{36}\}", text, flags=re.M)
    assert 'Name: "desktopicon"' in text and "Flags: unchecked" in text  # an optional desktop icon
    assert "{group}\\{#AppName}" in text  # the Start Menu shortcut
    assert "{uninstallexe}" in text and "ChangesAssociations=yes" in text
    for extension in MODEL_EXTENSIONS:
        assert f'Subkey: "Software\\Classes\\.{extension}\\OpenWithProgids"' in text
    assert '"""{app}\\{#AppExe}"" ""%1"""' in text  # the opened file reaches the app as its argument


def test_build_script_helpers(tmp_path):
    sys.path.insert(0, str(PACKAGING))
    try:
        import build
    finally:
        sys.path.remove(str(PACKAGING))
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.bin").write_bytes(b"0" * 1000)
    (tmp_path / "y.bin").write_bytes(b"0" * 24)
    (tmp_path / "link").symlink_to(tmp_path / "y.bin")
    assert build.folder_size(tmp_path) == 1024
    env = build.minimal_env()
    assert env["QT_QPA_PLATFORM"] == "offscreen"
    assert str(ROOT / ".venv") not in env["PATH"] and sys.prefix not in env["PATH"]
