"""The segment service's admin routes, served by `siyu api serve` (see siyu/api.py)."""

from __future__ import annotations

from services.segment.api_accounts import accounts
from services.segment.api_contacts import contacts
from services.segment.api_funnel import reports
from services.segment.api_lifecycle import lifecycle
from services.segment.api_segments import segments
from services.segment.backfill import JOBS as BACKFILL_JOBS
from services.segment.dry_runs import JOBS as DRY_RUN_JOBS

BLUEPRINTS = (contacts, accounts, segments, lifecycle, reports)
# Background jobs the admin API runs (shared/jobs.py): dry runs, segment builds.
JOBS = (*DRY_RUN_JOBS, *BACKFILL_JOBS)
