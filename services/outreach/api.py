"""The outreach service's admin routes, served by ``siyu api serve``."""

from services.outreach.api_campaigns import campaigns
from services.outreach.api_channel_codes import channel_codes
from services.outreach.api_content import content, settings
from services.outreach.api_deliveries import deliveries
from services.outreach.api_effect import effects
from services.outreach.api_group_tasks import tasks as group_tasks
from services.outreach.api_preview import JOBS as PREVIEW_JOBS  # registers the preview routes
from services.outreach.api_welcome import welcomes

BLUEPRINTS = (
    content,
    settings,
    campaigns,
    deliveries,
    effects,
    group_tasks,
    welcomes,
    channel_codes,
)
JOBS = PREVIEW_JOBS  # background jobs the admin API runs (shared/jobs.py)
