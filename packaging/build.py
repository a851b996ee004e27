"""Build the effstudio bundle for this OS and check it: size, self-test, cold start to the first window.

    python packaging/build.py                 # dist/effstudio/, checked, plus the .tar.gz on Linux
    python packaging/build.py --no-trim       # everything the hooks collect (dist/untrimmed/), to compare
    python packaging/build.py --check-only    # check an existing bundle without rebuilding

Run it with the Python of the environment the bundle is made from (with the `packaging` extra:
`pip install -e '.[packaging]'`). The checks run the bundle from an empty folder with a minimal
environment (no Python on PATH): `effstudio --self-test`, then a start with a checkpoint argument
that saves the first window as a PNG (offscreen) and records when it was shown. The figures are
printed and written to <dist>/build-report.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "packaging" / "effstudio.spec"
ICON_DIR = ROOT / "build" / "icons"
EXE_NAME = "effstudio-cli.exe" if sys.platform == "win32" else "effstudio"


def folder_size(folder: Path) -> int:
    """Bytes of every regular file under ``folder`` (links not followed, not counted twice)."""
    total = 0
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            path = Path(dirpath) / name
            if not path.is_symlink():
                total += path.stat().st_size
    return total


def mib(size: int) -> float:
    return round(size / 2**20, 1)


def minimal_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """No Python environment: only the system folders on PATH, a home, an offscreen Qt."""
    if sys.platform == "win32":
        system_root = os.environ.get("SystemRoot", r"C:\Windows")
        env = {"PATH": rf"{system_root}\system32;{system_root}", "SystemRoot": system_root,
               "USERPROFILE": os.environ.get("USERPROFILE", ""), "APPDATA": os.environ.get("APPDATA", ""),
               "LOCALAPPDATA": os.environ.get("LOCALAPPDATA", ""), "TEMP": tempfile.gettempdir()}
    else:
        env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp"), "LANG": "C.UTF-8"}
    env["QT_QPA_PLATFORM"] = "offscreen"
    env.update(extra or {})
    return env


def build_icons() -> list[Path]:
    """The .ico / .icns for the bundle, from the committed PNGs (needs Pillow)."""
    sys.path.insert(0, str(ROOT / "packaging"))
    from render_icons import write_ico_icns

    return write_ico_icns(ICON_DIR)


def run_pyinstaller(dist: Path, work: Path, trim: bool) -> float:
    env = dict(os.environ, EFFSTUDIO_TRIM="1" if trim else "0", EFFSTUDIO_ICON_DIR=str(ICON_DIR))
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "PyInstaller", "--noconfirm", "--clean", "--log-level", "WARN",
                    "--distpath", str(dist), "--workpath", str(work), str(SPEC)], check=True, env=env, cwd=ROOT)
    return time.perf_counter() - start


def self_test(bundle: Path) -> dict[str, object]:
    """`effstudio --self-test --json` from an empty folder with a minimal environment."""
    exe = bundle / EXE_NAME
    with tempfile.TemporaryDirectory(prefix="effstudio-clean-") as clean:
        env = minimal_env({"HOME": clean} if sys.platform != "win32" else None)
        start = time.perf_counter()
        result = subprocess.run([str(exe), "--self-test", "--json"], cwd=clean, env=env, capture_output=True,
                                text=True, timeout=600)
        seconds = time.perf_counter() - start
    records = []
    for line in result.stdout.splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    summary = next((r for r in records if r.get("kind") == "summary"), {})
    for record in records:
        if record.get("kind") == "check":
            mark = "PASS" if record["ok"] else "FAIL"
            print(f"  [{mark}] {record['name']:<26} {record['seconds']:6.2f}s  {record['detail']}")
    if result.returncode != 0:
        print(result.stderr[-3000:], file=sys.stderr)
    return {"exit_code": result.returncode, "ok": result.returncode == 0 and bool(summary.get("ok")),
            "wall_s": round(seconds, 2), "checks": summary.get("checks"), "failed": summary.get("failed")}


def first_window(bundle: Path, screenshot: Path, checkpoint: Path | None) -> dict[str, object]:
    """Start the bundle (with a file to open) and time the start to its first shown window."""
    exe = bundle / ("effstudio.exe" if sys.platform == "win32" else "effstudio")
    screenshot.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="effstudio-clean-") as clean:
        env = minimal_env({"EFFSTUDIO_FIRST_WINDOW": str(screenshot)})
        if sys.platform != "win32":
            env["HOME"] = clean  # fresh settings: the first start a new user sees
        args = [str(exe)] + ([str(checkpoint)] if checkpoint else [])
        started = time.time()
        result = subprocess.run(args, cwd=clean, env=env, capture_output=True, text=True, timeout=300)
        ended = time.time()
    record_path = screenshot.with_suffix(".json")
    if result.returncode != 0 or not record_path.is_file():
        print(result.stdout[-2000:], result.stderr[-3000:], file=sys.stderr)
        return {"ok": False, "exit_code": result.returncode}
    record = json.loads(record_path.read_text(encoding="utf-8"))
    return {"ok": True, "first_window_s": round(record["shown_at"] - started, 2),
            "process_s": round(ended - started, 2), "section": record.get("section"),
            "inspect_state": record.get("inspect_state"), "screenshot": str(screenshot)}


def drop_caches() -> bool:
    """Empty Linux's page cache, so that the next start reads the bundle from disk (needs root)."""
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError as err:
        print(f"cannot drop the page cache ({err}): the first start is not a cold one", file=sys.stderr)
        return False
    return True


def sample_checkpoint(folder: Path) -> Path | None:
    """A small effstudio checkpoint for the file-argument check (made with this environment's effstudio)."""
    code = ("import sys; from pathlib import Path; from effstudio.selftest import _tiny_run_config;"
            "from effstudio.engine.build import build_model, build_task;"
            "from effstudio.engine.checkpoint import save_checkpoint;"
            "c = _tiny_run_config(); t = build_task(c);"
            "save_checkpoint(Path(sys.argv[1]), build_model(c, t.spec), c, 1)")
    target = folder / "model.safetensors"
    env = dict(os.environ, EFFSTUDIO_CACHE_DIR=str(folder / "cache"))
    result = subprocess.run([sys.executable, "-c", code, str(target)], cwd=ROOT, env=env)
    return target if result.returncode == 0 else None


def make_archive(bundle: Path, dist: Path) -> Path:
    """effstudio-<version>-linux-<arch>.tar.gz: the bundle with install.sh and uninstall.sh at its top."""
    import platform

    version = "0.1.0"
    for line in (ROOT / "effstudio" / "__init__.py").read_text(encoding="utf-8").splitlines():
        if line.startswith("__version__"):
            version = line.split("=", 1)[1].strip().strip("\"'")
    for script in ("install.sh", "uninstall.sh"):
        shutil.copy2(ROOT / "packaging" / "linux" / script, bundle / script)
    archive = dist / f"effstudio-{version}-linux-{platform.machine()}.tar.gz"
    with tarfile.open(archive, "w:gz", compresslevel=6) as tar:
        tar.add(bundle, arcname="effstudio")
    return archive


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-trim", action="store_true", help="keep everything the hooks collect")
    parser.add_argument("--dist", type=Path, help="output folder (default: dist/, or dist/untrimmed/ with --no-trim)")
    parser.add_argument("--check-only", action="store_true", help="check the existing bundle, do not build")
    parser.add_argument("--no-archive", action="store_true", help="skip the .tar.gz (Linux)")
    parser.add_argument("--drop-caches", action="store_true",
                        help="Linux, as root: empty the page cache before the first start (a true cold start)")
    args = parser.parse_args(argv)
    dist = (args.dist or (ROOT / "dist" / "untrimmed" if args.no_trim else ROOT / "dist")).resolve()
    bundle = dist / "effstudio"
    report: dict[str, object] = {"platform": sys.platform, "trimmed": not args.no_trim}

    if not args.check_only:
        icons = build_icons()
        print(f"icons: {', '.join(p.name for p in icons) or 'none (Pillow missing)'}")
        work = ROOT / "build" / ("pyinstaller-untrimmed" if args.no_trim else "pyinstaller")
        report["build_s"] = round(run_pyinstaller(dist, work, trim=not args.no_trim), 1)
        print(f"built {bundle} in {report['build_s']} s")
    if not (bundle / EXE_NAME).exists():
        print(f"no bundle at {bundle}", file=sys.stderr)
        return 1
    size = folder_size(bundle)
    report["size_bytes"], report["size_mib"] = size, mib(size)
    print(f"bundle size: {mib(size)} MiB unpacked ({size:,} bytes)")
    trim_report = ROOT / "build" / "trim-report.json"
    if not args.no_trim and not args.check_only and trim_report.is_file():
        trimmed = json.loads(trim_report.read_text(encoding="utf-8"))
        report.update(trimmed)
        print(f"trimming dropped {mib(trimmed['dropped_bytes'])} MiB of collected files and stripping saved "
              f"{mib(trimmed['strip_saved_bytes'])} MiB (modules excluded from the analysis not counted)")

    print("self-test (empty folder, minimal environment):")
    report["self_test"] = self_test(bundle)
    print(f"self-test: {'passed' if report['self_test']['ok'] else 'FAILED'} in {report['self_test']['wall_s']} s")

    with tempfile.TemporaryDirectory(prefix="effstudio-sample-") as tmp:
        checkpoint = sample_checkpoint(Path(tmp))
        screenshot = dist / "first-window.png"
        if args.drop_caches:
            report["caches_dropped"] = drop_caches()
        runs = [first_window(bundle, screenshot, checkpoint) for _ in range(2)]
    report["first_window"] = runs
    for label, run in zip(("cold start", "warm start"), runs, strict=True):
        if run["ok"]:
            print(f"{label}: first window after {run['first_window_s']} s (section {run['section']}, "
                  f"inspector {run['inspect_state']}); screenshot {run['screenshot']}")
        else:
            print(f"{label}: the window did not open (exit {run['exit_code']})")

    if sys.platform.startswith("linux") and not args.no_archive and not args.check_only:
        archive = make_archive(bundle, dist)
        report["archive"] = str(archive)
        report["archive_mib"] = mib(archive.stat().st_size)
        print(f"archive: {archive} ({report['archive_mib']} MiB)")
    (dist / "build-report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    ok = bool(report["self_test"]["ok"]) and all(r["ok"] for r in runs)
    print("bundle OK" if ok else "bundle FAILED its checks")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
