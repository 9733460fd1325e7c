"""The outreach service's admin routes, served by ``siyu api serve``."""

from services.outreach.api_campaigns import JOBS as CAMPAIGN_JOBS
from services.outreach.api_campaigns import campaigns, deliveries
from services.outreach.api_content import content, settings

BLUEPRINTS = (content, settings, campaigns, deliveries)
JOBS = CAMPAIGN_JOBS  # background jobs the admin API runs (shared/jobs.py)
