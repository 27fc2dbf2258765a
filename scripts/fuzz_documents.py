"""Nightly-size fuzzing of the scenario loader and runner: the CI property test
(tests/scenario/test_random_documents.py) with many more documents and a fresh random draw.

Every document must be refused in one sentence (exit 2) or run (exit 0 or 1); none may be an
internal error (exit 3) or run long.

Usage::

    python scripts/fuzz_documents.py --examples 20000
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=10_000)
    args = parser.parse_args(argv)
    if args.examples < 1:
        parser.error("--examples must be at least 1")
    env = dict(os.environ, OPENBMS_FUZZ_EXAMPLES=str(args.examples))
    test = ROOT / "tests" / "scenario" / "test_random_documents.py"
    command = [sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider", str(test)]
    return subprocess.call(command, cwd=ROOT, env=env)


if __name__ == "__main__":
    raise SystemExit(main())
