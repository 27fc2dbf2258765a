"""Nightly-size fuzzing of the loaders and runners of user documents: a CI property test with many
more documents and a fresh random draw.

``--what scenarios`` (tests/scenario/test_random_documents.py): every scenario document must be
refused in one sentence (exit 2) or run (exit 0 or 1); none may be an internal error (exit 3) or
run long. ``--what campaigns`` (tests/apps/test_random_campaigns.py): every fleet campaign must be
refused in one sentence when it is loaded or run every one of its packs to the end (a campaign
that loads and then fails in its packs is bad input found too late).

Usage::

    python scripts/fuzz_documents.py --examples 20000
    python scripts/fuzz_documents.py --what campaigns --examples 5000
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = {"scenarios": "tests/scenario/test_random_documents.py", "campaigns": "tests/apps/test_random_campaigns.py"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=10_000)
    parser.add_argument("--what", choices=tuple(TESTS), default="scenarios")
    args = parser.parse_args(argv)
    if args.examples < 1:
        parser.error("--examples must be at least 1")
    env = dict(os.environ, OPENBMS_FUZZ_EXAMPLES=str(args.examples))
    test = ROOT / TESTS[args.what]
    command = [sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider", str(test)]
    return subprocess.call(command, cwd=ROOT, env=env)


if __name__ == "__main__":
    raise SystemExit(main())
