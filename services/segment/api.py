"""The segment service's admin routes, served by `siyu api serve` (see siyu/api.py)."""

from __future__ import annotations

from services.segment.api_accounts import accounts
from services.segment.api_contacts import contacts
from services.segment.api_lifecycle import BLUEPRINTS as LIFECYCLE
from services.segment.api_lifecycle import JOBS as LIFECYCLE_JOBS
from services.segment.api_segments import segments

BLUEPRINTS = (contacts, accounts, segments, *LIFECYCLE)
JOBS = LIFECYCLE_JOBS  # background jobs the admin API runs (shared/jobs.py)
