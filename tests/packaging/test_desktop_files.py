"""Desktop integration files: the .desktop entry, AppStream metainfo, MIME types, icons, install scripts.

Key fields are checked in plain Python; desktop-file-validate and appstreamcli check the files
as well where they are installed (the tests skip those checks otherwise).
"""

from __future__ import annotations

import configparser
import os
import shutil
import struct
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINUX = ROOT / "resources" / "linux"
DESKTOP = LINUX / "effstudio.desktop"
METAINFO = LINUX / "io.github.effstudio.effstudio.metainfo.xml"
MIME = LINUX / "effstudio-mime.xml"
ICONS = ROOT / "resources" / "icons" / "hicolor"
SIZES = (16, 24, 32, 48, 64, 128, 256)
MIME_NS = "{http://www.freedesktop.org/standards/shared-mime-info}"
EXTENSIONS = {"application/x-safetensors": {"safetensors"}, "application/x-onnx": {"onnx"},
              "application/x-pytorch": {"pt", "pth", "ckpt"}}


def desktop_entry(path: Path = DESKTOP) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # keys are case-sensitive
    parser.read(path, encoding="utf-8")
    return parser["Desktop Entry"]


def mime_globs() -> dict[str, set[str]]:
    root = ET.parse(MIME).getroot()
    assert root.tag == f"{MIME_NS}mime-info"
    return {t.get("type"): {g.get("pattern").removeprefix("*.") for g in t.findall(f"{MIME_NS}glob")}
            for t in root.findall(f"{MIME_NS}mime-type")}


def test_desktop_entry_fields():
    entry = desktop_entry()
    assert entry["Type"] == "Application" and entry["Name"] == "effstudio"
    assert entry["Icon"] == "effstudio" and entry["Terminal"] == "false"
    assert entry["Exec"].split()[0] == "effstudio" and "%f" in entry["Exec"].split()
    assert entry["Categories"].endswith(";") and entry["MimeType"].endswith(";")
    assert set(filter(None, entry["MimeType"].split(";"))) == set(EXTENSIONS)
    assert entry["StartupWMClass"] == "effstudio"  # the app's desktop file name (gui/app.py)


def test_mime_types_name_every_model_extension():
    assert mime_globs() == EXTENSIONS
    for mime_type in ET.parse(MIME).getroot():
        assert mime_type.find(f"{MIME_NS}comment").text


def test_metainfo_fields():
    root = ET.parse(METAINFO).getroot()
    assert root.tag == "component" and root.get("type") == "desktop-application"
    assert root.findtext("id") == "io.github.effstudio.effstudio" == METAINFO.name.removesuffix(".metainfo.xml")
    assert root.findtext("metadata_license") and root.findtext("project_license") == "MIT"
    assert root.findtext("launchable") == DESKTOP.name
    assert len(root.findall("description/p")) >= 1 and root.findtext("summary")
    assert {m.text for m in root.findall("provides/mediatype")} == set(EXTENSIONS)
    assert root.find("releases/release").get("version")


@pytest.mark.skipif(shutil.which("desktop-file-validate") is None, reason="desktop-file-validate not installed")
def test_desktop_file_validate():
    result = subprocess.run(["desktop-file-validate", str(DESKTOP)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "error" not in result.stdout.lower()


@pytest.mark.skipif(shutil.which("appstreamcli") is None, reason="appstreamcli not installed")
def test_appstreamcli_validate():
    result = subprocess.run(["appstreamcli", "validate", "--no-net", str(METAINFO)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


@pytest.mark.parametrize("size", SIZES)
def test_icon_png_in_every_size(size):
    path = ICONS / f"{size}x{size}" / "apps" / "effstudio.png"
    assert png_size(path) == (size, size)


def test_scalable_icon_is_svg():
    root = ET.parse(ICONS / "scalable" / "apps" / "effstudio.svg").getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg" and root.get("viewBox") == "0 0 64 64"


def test_window_icon_comes_from_the_resources(qapp):
    from effstudio.gui.icons import app_icon
    from effstudio.resources import app_icon_pngs

    assert set(app_icon_pngs()) == set(SIZES)
    sizes = {(s.width(), s.height()) for s in app_icon().availableSizes()}
    assert {(16, 16), (256, 256)} <= sizes


@pytest.mark.skipif(os.name != "posix", reason="POSIX shell scripts")
def test_install_and_uninstall_scripts(tmp_path):
    """install.sh copies a bundle and its entries under PREFIX; uninstall.sh removes them again."""
    bundle = tmp_path / "bundle"
    (bundle / "_internal").mkdir(parents=True)
    shutil.copytree(ROOT / "resources", bundle / "_internal" / "resources",
                    ignore=shutil.ignore_patterns("screenshot.png"))
    exe = bundle / "effstudio"
    exe.write_text("#!/bin/sh\necho fake effstudio\n")
    exe.chmod(0o755)
    prefix = tmp_path / "prefix"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PREFIX": str(prefix)}
    install = subprocess.run(["sh", str(ROOT / "packaging" / "linux" / "install.sh"), str(bundle)],
                             env=env, capture_output=True, text=True)
    assert install.returncode == 0, install.stdout + install.stderr
    share = prefix / "share"
    app = prefix / "lib" / "effstudio" / "effstudio"
    assert app.is_file() and (prefix / "bin" / "effstudio").resolve() == app.resolve()
    installed = share / "applications" / "effstudio.desktop"
    assert desktop_entry(installed)["Exec"] == f'"{app}" %f'
    assert (share / "mime" / "packages" / "effstudio-mime.xml").is_file()
    assert (share / "metainfo" / METAINFO.name).is_file()
    for size in SIZES:
        assert (share / "icons" / "hicolor" / f"{size}x{size}" / "apps" / "effstudio.png").is_file()
    assert (share / "icons" / "hicolor" / "scalable" / "apps" / "effstudio.svg").is_file()
    if shutil.which("desktop-file-validate"):
        check = subprocess.run(["desktop-file-validate", str(installed)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout
    if shutil.which("update-mime-database"):  # the database now maps the extensions to our types
        globs = (share / "mime" / "globs2").read_text()
        assert "application/x-safetensors:*.safetensors" in globs

    uninstall = subprocess.run(["sh", str(ROOT / "packaging" / "linux" / "uninstall.sh")], env=env,
                               capture_output=True, text=True)
    assert uninstall.returncode == 0, uninstall.stdout + uninstall.stderr
    assert not app.exists() and not (prefix / "bin" / "effstudio").exists() and not installed.exists()
    assert not list(share.glob("icons/hicolor/*/apps/effstudio.*"))
    assert not (share / "mime" / "packages" / "effstudio-mime.xml").exists()
