"""The Official Account (公众号) server-API client: the WeCom client's token cache, limiter,
timeouts and error policy (shared/wechat/wecom.py), with the OA's own rules (docs/platform.md):

- tokens from ``stable_token`` (it does not rotate on repeated calls, so several processes can
  share an app without invalidating each other's token);
- 45009 means the app's daily quota is used up: ``QuotaExhausted``, not retried today;
- the sends outreach uses: template, customer-service and mass messages.
"""

from __future__ import annotations

from wechatpy.utils import json

from shared.metrics import PLATFORM_CALLS
from shared.wechat.wecom import RATE_LIMIT, WeComClient, WeComError

DEFAULT_OA_API_BASE = "https://api.weixin.qq.com/cgi-bin/"
# The sends a daily quota stops. A quota is hit about once a day, then sending waits until the
# next: its 45009 series exists at 0 from the start so that this one error is an increase the
# quota alert sees (a series born at 1 shows none).
SENDS = (
    "message/template/send",
    "message/custom/send",
    "message/mass/send",
    "message/mass/sendall",
)


class QuotaExhausted(WeComError):
    """OA 45009: the daily quota of this API is used up; try tomorrow."""

    retryable = False


class OfficialAccountClient(WeComClient):
    PLATFORM = "oa"

    def __init__(self, app_id: str, secret: str, *, api_base: str | None = None, **kwargs):
        super().__init__(app_id, secret, api_base=api_base or DEFAULT_OA_API_BASE, **kwargs)
        for api in SENDS:
            PLATFORM_CALLS.labels(self.tenant, self.PLATFORM, api, str(RATE_LIMIT))

    @property
    def app_id(self) -> str:
        return self.corp_id

    def __repr__(self) -> str:
        return f"OfficialAccountClient(app_id={self.corp_id!r}, api_base={self.API_BASE_URL!r})"

    __str__ = __repr__

    def fetch_access_token(self) -> dict:
        self.limiter.acquire()
        body = {"grant_type": "client_credential", "appid": self.corp_id, "secret": self.secret}
        result = self._call(
            "post",
            self.API_BASE_URL + "stable_token",
            data=json.dumps(body).encode("utf-8"),
            headers={"Content-Type": "application/json"},
        )
        errcode = int(result.get("errcode") or 0)
        if errcode != 0 or not result.get("access_token"):
            raise self._error(errcode, str(result.get("errmsg") or "no access_token"))
        return result

    def _error(self, errcode: int, errmsg: str) -> WeComError:
        if errcode == RATE_LIMIT:
            return QuotaExhausted(errcode, errmsg)
        return super()._error(errcode, errmsg)

    def send_template(self, body: dict) -> dict:
        """``message/template/send``: ``{"msgid"}``; ``client_msg_id`` makes a resend a no-op."""
        return self.post("message/template/send", data=body)

    def send_custom(self, body: dict) -> dict:
        """``message/custom/send``: only inside the customer-service window."""
        return self.post("message/custom/send", data=body)

    def mass_sendall(self, body: dict) -> dict:
        """``message/mass/sendall`` to an OA user tag (``filter.tag_id``): ``{"msg_id"}``."""
        return self.post("message/mass/sendall", data=body)

    def mass_send(self, body: dict) -> dict:
        """``message/mass/send`` to 2..10000 openids (service accounts): ``{"msg_id"}``."""
        return self.post("message/mass/send", data=body)
