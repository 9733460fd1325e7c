"""The outreach service's admin routes, served by ``siyu api serve``."""

from services.outreach.api_campaigns import campaigns
from services.outreach.api_channel_codes import channel_codes
from services.outreach.api_content import content, settings
from services.outreach.api_deliveries import deliveries
from services.outreach.api_preview import JOBS as PREVIEW_JOBS  # registers the preview routes

BLUEPRINTS = (content, settings, campaigns, deliveries, channel_codes)
JOBS = PREVIEW_JOBS  # background jobs the admin API runs (shared/jobs.py)
