"""`make bench`: run every benchmark in bench/ and print its report."""

from __future__ import annotations

import sys

from bench import ingest, outreach, segment


def main() -> int:
    failed = 0
    for bench in (ingest, segment, outreach):
        failed |= bench.main()
        print()
    return failed


if __name__ == "__main__":
    sys.exit(main())
