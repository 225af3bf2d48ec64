"""``python -m bench [rest|rpc|idle|identity|all] [options]``: run benchmarks.

With no name, or ``all``, every benchmark runs with its defaults, one after
another; options are passed to a single named benchmark.
"""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = ("rest", "rpc", "idle", "identity")


def main(argv: list[str]) -> int:
    """Run the named benchmark (or all of them); non-zero if any failed."""
    if argv and argv[0] in BENCHMARKS:
        return _run(argv[0], argv[1:])
    if argv and argv[0] not in ("all", "-h", "--help"):
        print(
            f"unknown benchmark {argv[0]!r}; choose from all, {', '.join(BENCHMARKS)}"
        )
        return 2
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    statuses = [_run(name, []) for name in BENCHMARKS]
    return max(statuses)


def _run(name: str, argv: list[str]) -> int:
    module = importlib.import_module(f"bench.{name}")
    print(f"== bench {name}", flush=True)
    status: int = module.main(argv)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
