"""`make bench`: run every benchmark in bench/ and print its report."""

from __future__ import annotations

import sys

from bench import ingest, segment


def main() -> int:
    failed = 0
    for bench in (ingest, segment):
        failed |= bench.main()
        print()
    return failed


if __name__ == "__main__":
    sys.exit(main())
