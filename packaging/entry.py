"""The bundle's entry script: `effstudio` with the same commands as the pip-installed one."""

from effstudio.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
