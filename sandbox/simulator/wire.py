"""The wire formats of `siyu simulate`: each ``Action`` rendered, signed and (where configured)
encrypted the way WeChat, WeCom or a CRM would send it (the contract with the ingest routes,
docs/platform.md, "Callbacks: URL verification" and "Callbacks: signatures and encryption"):

- OA: ``POST {url}/wechat/oa/{app_id}?signature&timestamp&nonce&openid``,
  ``Content-Type: text/xml``, plain XML; an OA with an EncodingAESKey gets safe mode:
  ``&encrypt_type=aes&msg_signature`` and ``<xml><ToUserName/><Encrypt/></xml>``.
- WeCom: ``POST {url}/wecom/{corp_id}?msg_signature&timestamp&nonce``, body
  ``<xml><ToUserName/><AgentID/><Encrypt/></xml>``.
- Business events: ``POST {url}/api/v1/events``, ``Authorization: Bearer $SIYU_EVENTS_TOKEN``,
  ``{"events": [...]}`` (up to 50 per request, sandbox/simulator/plan.py).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from defusedxml.ElementTree import fromstring
from wechatpy.crypto import WeChatCrypto
from wechatpy.enterprise.crypto import WeChatCrypto as WeComCrypto
from wechatpy.utils import WeChatSigner

from sandbox.population.actions import Action
from shared.tenants import Tenant

EVENTS_TOKEN_ENV = "SIYU_EVENTS_TOKEN"  # noqa: S105 (a variable name)

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")
# Elements WeChat sends as bare numbers; everything else is a CDATA section.
_BARE_NUMBERS = frozenset(
    {
        "CreateTime",
        "MsgId",
        "Latitude",
        "Longitude",
        "Precision",
        "Location_X",
        "Location_Y",
        "Scale",
        "JoinScene",
        "QuitScene",
        "MemChangeCnt",
    }
)
# Characters XML 1.0 cannot carry at all (even in CDATA); replaced, never sent.
_NOT_XML = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


# --- XML ----------------------------------------------------------------------------------------


def cdata(text: str) -> str:
    """A CDATA section holding ``text`` exactly, whatever it contains (``]]>`` is split)."""
    text = _NOT_XML.sub("\ufffd", text)
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def xml_element(name: str, value: object) -> str:
    if not _NAME.match(name):
        raise ValueError(f"not an XML element name: {name!r}")
    if isinstance(value, bool):
        raise TypeError(f"{name}: booleans have no WeChat encoding")
    if isinstance(value, list | tuple):
        inner = "".join(f"<Item>{cdata(str(item))}</Item>" for item in value)
    elif isinstance(value, int) or (name in _BARE_NUMBERS and _NUMBER.match(str(value))):
        inner = str(value)
    else:
        inner = cdata(str(value))
    return f"<{name}>{inner}</{name}>"


def render_xml(fields: dict[str, object]) -> str:
    """``<xml>`` with one element per field, in order (how WeChat and WeCom send callbacks)."""
    return "<xml>" + "".join(xml_element(k, v) for k, v in fields.items()) + "</xml>"


def plain_signature(*parts: str) -> str:
    """sha1 of the sorted, concatenated parts, hex (the WeChat signature)."""
    signer = WeChatSigner()
    signer.add_data(*parts)
    return signer.signature


def official_account_id(app_id: str) -> str:
    """A stable stand-in for the OA's original id (gh_...), which the tenants file does not hold."""
    return "gh_" + hashlib.sha256(app_id.encode()).hexdigest()[:12]


# --- requests -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class WireRequest:
    kind: str  # 'oa' | 'wecom' | 'biz'
    label: str  # envelope type of a webhook; 'biz' for a batch of business events
    url: str
    headers: dict[str, str]
    body: bytes
    plaintext: str | None = None  # the inner XML of a webhook (before encryption)
    events: tuple[str, ...] = ()  # the types of the business events in a batch
    method: str = "POST"


class Renderer:
    """Turns actions into signed (and, where configured, encrypted) HTTP requests for a tenant.

    ``rng`` draws the nonces; ``signed_at`` gives the query timestamp (default: the wall clock).
    """

    def __init__(
        self,
        tenant: Tenant,
        base_url: str,
        rng: random.Random,
        *,
        events_token: str | None = None,
        signed_at: Callable[[], int] | None = None,
    ):
        self.tenant = tenant
        self.base_url = base_url.rstrip("/")
        self.rng = rng
        self.events_token = events_token
        self.signed_at = signed_at or (lambda: int(time.time()))
        self.tz = ZoneInfo(tenant.timezone)
        self._oa = []
        for oa in tenant.wechat_oa:
            token = oa.token.reveal()
            key = oa.encoding_aes_key.reveal() if oa.encoding_aes_key is not None else None
            crypto = WeChatCrypto(token, key, oa.app_id) if key else None
            self._oa.append((oa, token, crypto))
        self._wecom = None
        if tenant.wecom is not None:
            wecom = tenant.wecom
            token = wecom.token.reveal()
            crypto = WeComCrypto(token, wecom.encoding_aes_key.reveal(), wecom.corp_id)
            self._wecom = (wecom, crypto)

    def accepts(self, action: Action) -> bool:
        """Whether this tenant has the channel the action needs (an OA, a WeCom corp, a token)."""
        if action.kind == "oa":
            return bool(self._oa)
        if action.kind == "wecom":
            return self._wecom is not None
        return action.kind == "biz" and bool(self.events_token)

    def _nonce(self) -> str:
        return str(self.rng.randint(1_000_000_000, 2_147_483_647))

    def occurred_at(self, at: int) -> str:
        return datetime.fromtimestamp(at, self.tz).isoformat(timespec="seconds")

    def render(self, action: Action) -> WireRequest:
        if action.kind == "oa":
            return self.oa(action)
        if action.kind == "wecom":
            return self.wecom(action)
        return self.biz([action])

    def oa(self, action: Action) -> WireRequest:
        oa, token, crypto = self._oa[action.oa_slot % len(self._oa)]
        gh_id = official_account_id(oa.app_id)
        inner = render_xml(
            {
                "ToUserName": gh_id,
                "FromUserName": action.fields["FromUserName"],
                "CreateTime": int(action.at),
                **{k: v for k, v in action.fields.items() if k != "FromUserName"},
            }
        )
        timestamp, nonce = str(self.signed_at()), self._nonce()
        query = {
            "signature": plain_signature(token, timestamp, nonce),
            "timestamp": timestamp,
            "nonce": nonce,
            "openid": str(action.fields["FromUserName"]),
        }
        if crypto is None:
            body = inner
        else:
            encrypt, msg_signature = _encrypt(crypto, inner, nonce, timestamp)
            query.update(encrypt_type="aes", msg_signature=msg_signature)
            body = render_xml({"ToUserName": gh_id, "Encrypt": encrypt})
        return WireRequest(
            kind="oa",
            label=action.type,
            url=f"{self.base_url}/wechat/oa/{oa.app_id}?{urlencode(query)}",
            headers={"Content-Type": "text/xml"},
            body=body.encode("utf-8"),
            plaintext=inner,
        )

    def wecom(self, action: Action) -> WireRequest:
        if self._wecom is None:
            raise ValueError(f"tenant {self.tenant.id} has no WeCom corp")
        wecom, crypto = self._wecom
        inner = render_xml(
            {
                "ToUserName": wecom.corp_id,
                "FromUserName": "sys",
                "CreateTime": int(action.at),
                "MsgType": "event",
                **action.fields,
            }
        )
        timestamp, nonce = str(self.signed_at()), self._nonce()
        encrypt, msg_signature = _encrypt(crypto, inner, nonce, timestamp)
        query = {"msg_signature": msg_signature, "timestamp": timestamp, "nonce": nonce}
        agent = "" if wecom.agent_id is None else str(wecom.agent_id)
        body = render_xml({"ToUserName": wecom.corp_id, "AgentID": agent, "Encrypt": encrypt})
        return WireRequest(
            kind="wecom",
            label=action.type,
            url=f"{self.base_url}/wecom/{wecom.corp_id}?{urlencode(query)}",
            headers={"Content-Type": "text/xml"},
            body=body.encode("utf-8"),
            plaintext=inner,
        )

    def biz_event(self, action: Action) -> dict:
        f = action.fields
        return {
            "idempotency_key": f["idempotency_key"],
            "type": f["type"],
            "occurred_at": self.occurred_at(action.at),
            "identity": f["identity"],
            "attributes": f["attributes"],
        }

    def biz(self, actions: list[Action]) -> WireRequest:
        if not self.events_token:
            raise ValueError(f"business events need a token (set {EVENTS_TOKEN_ENV})")
        events = [self.biz_event(a) for a in actions]
        body = json.dumps({"events": events}, ensure_ascii=False, separators=(",", ":"))
        return WireRequest(
            kind="biz",
            label="biz",
            url=f"{self.base_url}/api/v1/events",
            headers={
                "Content-Type": "application/json; charset=utf-8",
                "Authorization": f"Bearer {self.events_token}",
            },
            body=body.encode("utf-8"),
            events=tuple(e["type"] for e in events),
        )


def _encrypt(crypto: WeChatCrypto | WeComCrypto, xml: str, nonce: str, timestamp: str):
    """(Encrypt, msg_signature) from wechatpy's reply envelope."""
    envelope = fromstring(crypto.encrypt_message(xml, nonce, timestamp))
    return envelope.findtext("Encrypt"), envelope.findtext("MsgSignature")
