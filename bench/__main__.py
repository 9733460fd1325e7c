"""`make bench`: run every benchmark in bench/ and print its report."""

from __future__ import annotations

import sys

from bench import ingest


def main() -> int:
    return ingest.main()


if __name__ == "__main__":
    sys.exit(main())
