"""Each tenant's WeCom and Official Account clients, from the tenants file and the API bases in
the settings (the fake server in dev and tests). A tenant without a channel, or whose secret is
not set, has no client for it: its deliveries on that channel fail with ``channel_unavailable``.

Given the worker's pool, every client takes its calls from the corp's or app's bucket in
PostgreSQL (rate_limits.py), shared by all workers; without one, from a bucket of this process.
"""

from __future__ import annotations

import structlog
from psycopg_pool import ConnectionPool

from services.outreach.rate_limits import SharedRateLimiter
from shared.config import Settings
from shared.errors import ConfigError
from shared.tenants import TenantRegistry
from shared.wechat import WeComClient
from shared.wechat.oa import OfficialAccountClient

log = structlog.get_logger("siyu.outreach")


class Clients:
    def __init__(
        self, settings: Settings, tenants: TenantRegistry, *, pool: ConnectionPool | None = None
    ):
        def limiter(bucket: str) -> SharedRateLimiter | None:
            return (
                SharedRateLimiter(pool, bucket, settings.wecom_rate) if pool is not None else None
            )

        self._wecom: dict[str, WeComClient] = {}
        self._oa: dict[str, OfficialAccountClient] = {}
        for tenant in tenants:
            if tenant.wecom is not None and tenant.wecom.secret is not None:
                try:
                    secret = tenant.wecom.secret.reveal()
                except ConfigError as exc:
                    log.warning("wecom_client_unavailable", tenant_id=tenant.id, reason=str(exc))
                else:
                    self._wecom[tenant.id] = WeComClient(
                        tenant.wecom.corp_id,
                        secret,
                        api_base=settings.wecom_api_base,
                        rate=settings.wecom_rate,
                        limiter=limiter(f"wecom:{tenant.wecom.corp_id}"),
                        tenant=tenant.id,
                    )
            for oa in tenant.wechat_oa[:1]:  # outreach sends from the tenant's first OA
                if oa.app_secret is None:
                    continue
                try:
                    secret = oa.app_secret.reveal()
                except ConfigError as exc:
                    log.warning("oa_client_unavailable", tenant_id=tenant.id, reason=str(exc))
                    continue
                self._oa[tenant.id] = OfficialAccountClient(
                    oa.app_id,
                    secret,
                    api_base=settings.wechat_api_base,
                    rate=settings.wecom_rate,
                    limiter=limiter(f"oa:{oa.app_id}"),
                    tenant=tenant.id,
                )

    def wecom(self, tenant_id: str) -> WeComClient | None:
        return self._wecom.get(tenant_id)

    def oa(self, tenant_id: str) -> OfficialAccountClient | None:
        return self._oa.get(tenant_id)
