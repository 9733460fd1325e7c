"""`make bench`: run every benchmark in bench/, print each report, and write bench/REPORT.md
(with charts in bench/charts/ when matplotlib is installed)."""

from __future__ import annotations

import contextlib
import io
import sys

from bench import (
    console,
    funnel,
    ingest,
    latency,
    load,
    outreach,
    report,
    segment,
    tick,
    welcome,
)
from shared.logging import configure_logging


def main() -> int:
    configure_logging("WARNING")  # the report holds results, not migration lines
    failed = 0
    sections = []
    for bench in (ingest, segment, tick, outreach, funnel, console, load, latency, welcome):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            failed |= bench.main()
        text = out.getvalue()
        print(text)
        sections.append(text)
    print(f"report: {report.write(sections)}")
    return failed


if __name__ == "__main__":
    sys.exit(main())
