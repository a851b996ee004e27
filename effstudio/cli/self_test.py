"""`effstudio --self-test [--json] [--no-window]`: the checks of effstudio.selftest, then the window's."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from effstudio.cli.errors import EXIT_FAILED, EXIT_OK
from effstudio.cli.output import print_json
from effstudio.selftest import environment, format_check, run_self_test


def cmd_self_test(argv: Sequence[str]) -> int:
    options = argparse.ArgumentParser(prog="effstudio --self-test")
    options.add_argument("--json", action="store_true", help="one JSON object per check, then a summary")
    options.add_argument("--no-window", action="store_true", help="skip the window check")
    args = options.parse_args(argv)
    info = environment()
    extra = []
    if not args.no_window:
        try:  # Qt is imported for this check alone
            from effstudio.gui.selftest import check_window
        except ImportError as err:  # a core-only installation: no window to check
            info["window"] = f"not checked ({err})"
        else:
            extra.append(("main window", check_window))
    if args.json:
        print_json({"kind": "environment", **info})
    else:
        print("effstudio self-test: " + ", ".join(f"{k} {v}" for k, v in info.items()), flush=True)
    checks = []
    for check in run_self_test(extra=extra):
        checks.append(check)
        if args.json:
            print_json({"kind": "check", **check.to_json()})
        else:
            print(format_check(check), flush=True)
    failed = [c.name for c in checks if not c.ok]
    seconds = round(sum(c.seconds for c in checks), 2)
    if args.json:
        print_json({"kind": "summary", "ok": not failed, "checks": len(checks), "failed": failed,
                    "seconds": seconds})
    else:
        verdict = f"FAILED: {', '.join(failed)}" if failed else "all passed"
        print(f"{len(checks) - len(failed)}/{len(checks)} checks passed in {seconds:.1f}s: {verdict}")
    return EXIT_FAILED if failed else EXIT_OK
