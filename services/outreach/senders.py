"""One sender per channel, chosen through ``SENDERS`` (channel -> how it is sent).

A sender makes the API call(s) for one batch of deliveries (runs.py picks the batch: same
content and sender, ``chunk`` deliveries at most) and returns each delivery's outcome as
``{delivery_id: (status, errcode, reason, msgid)}``. Errors that concern the whole run
(busy, throttled, quota) propagate to the executor; the rest are outcomes.

``idempotent``: the platform dedupes a resend (OA template and mass sends carry
``client_msg_id``/``clientmsgid`` derived from the delivery), so an interrupted send is sent
again rather than marked ``unknown``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from services.outreach import payloads
from services.outreach.clients import Clients
from services.outreach.model import CHANNEL_PAYLOAD
from services.outreach.plan import Campaign
from shared.links import LinkSigner
from shared.wechat import WeComError
from shared.wechat.oa import QuotaExhausted

Outcome = dict[int, tuple[str, int | None, str | None, str | None]]


@dataclass(frozen=True)
class Call:
    """What one API call needs: the run, its campaign, the batch, the client and the payload."""

    run: dict[str, Any]
    campaign: Campaign
    batch: list[dict[str, Any]]
    client: Any
    payload: dict[str, Any]
    signer: LinkSigner | None
    public_url: str

    def track(self, d: dict[str, Any], kind: str, value: str):
        """The link tracker of a delivery (its links name the recipient)."""
        return payloads.tracker(
            self.signer, self.public_url, tenant_id=self.run["tenant_id"],
            campaign_id=self.campaign.campaign_id, content_id=d["content_id"],
            identity_kind=kind, identity_value=value,
            contact_id=d["recipient_id"] if d["recipient_kind"] == "contact" else None,
        )  # fmt: skip


def wecom_single(call: Call) -> Outcome:
    # One message for many customers: its links cannot name a person, so they stay as
    # written (clicks arrive through the page's own tracking, if any).
    body = {"chat_type": "single", "external_userid": [d["address"] for d in call.batch],
            **payloads.build(payloads.wecom, call.payload, payloads.untracked)}  # fmt: skip
    return _mass_result(call.batch, call.client.add_msg_template(body), "address")


def wecom_group(call: Call) -> Outcome:
    first = call.batch[0]
    link = call.track(first, "chat_id", first["address"])
    body = {"chat_type": "group", "sender": first["sender"],
            "chat_id_list": [d["address"] for d in call.batch],
            **payloads.build(payloads.wecom, call.payload, link)}  # fmt: skip
    return _mass_result(call.batch, call.client.add_msg_template(body), "address")


def oa_mass(call: Call) -> Outcome:
    first, client, run = call.batch[0], call.client, call.run
    if first["recipient_kind"] == "tag":
        body = payloads.build(payloads.oa_mass, call.payload, [])
        del body["touser"]
        body["filter"] = {"is_to_all": False, "tag_id": int(first["address"])}
        body["clientmsgid"] = f"siyu-{run['run_id']}-{first['delivery_id']}"
        result = _deduped(lambda: client.mass_sendall(body))
        return {first["delivery_id"]: ("sent", None, None, str(result.get("msg_id")))}
    if len(call.batch) < 2:
        return {first["delivery_id"]: ("failed", None, "oa mass send needs 2+", None)}
    body = payloads.build(payloads.oa_mass, call.payload, [d["address"] for d in call.batch])
    body["clientmsgid"] = f"siyu-{run['run_id']}-{first['delivery_id']}"
    result = _deduped(lambda: client.mass_send(body))
    return {d["delivery_id"]: ("sent", None, None, str(result.get("msg_id")))
            for d in call.batch}  # fmt: skip


def oa_template(call: Call) -> Outcome:
    def send(d: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        body["client_msg_id"] = f"siyu-{d['delivery_id']}"
        return call.client.send_template(body)

    return _one_by_one(call, payloads.oa_template, send)


def oa_custom(call: Call) -> Outcome:
    return _one_by_one(call, payloads.oa_custom, lambda d, body: call.client.send_custom(body))


def _one_by_one(call: Call, build, send) -> Outcome:
    """OA template / customer service: one call per person."""
    out: Outcome = {}
    for d in call.batch:
        try:
            body = payloads.build(build, call.payload, d["address"],
                                  call.track(d, "openid", d["address"]))  # fmt: skip
            result = send(d, body)
            out[d["delivery_id"]] = ("sent", None, None, str(result.get("msgid") or ""))
        except payloads.BadContent as exc:  # this person's message only
            out[d["delivery_id"]] = ("failed", None, str(exc), None)
        except WeComError as exc:
            if exc.retryable or isinstance(exc, QuotaExhausted):
                raise
            out[d["delivery_id"]] = ("failed", exc.errcode, str(exc), None)
    return out


@dataclass(frozen=True)
class Sender:
    platform: str  # "wecom" or "oa": whose client sends
    send: Callable[[Call], Outcome]
    # Deliveries per API call. A group gets its own call so that its links name it (clicks
    # are attributed to the group); customers of a 1:1 mass message share one call.
    chunk: int = 1
    idempotent: bool = False  # the platform dedupes a resend

    def client(self, clients: Clients, tenant_id: str):
        return clients.wecom(tenant_id) if self.platform == "wecom" else clients.oa(tenant_id)


SENDERS: dict[str, Sender] = {
    "wecom_single": Sender("wecom", wecom_single, chunk=10000),
    "wecom_group": Sender("wecom", wecom_group),
    "oa_template": Sender("oa", oa_template, idempotent=True),
    "oa_mass": Sender("oa", oa_mass, chunk=10000, idempotent=True),
    "oa_custom": Sender("oa", oa_custom),
}


def send(
    clients: Clients,
    signer: LinkSigner | None,
    public_url: str,
    run: dict[str, Any],
    campaign: Campaign,
    batch: list[dict[str, Any]],
    payloads_: dict[str, Any],
) -> Outcome:
    """One API call for the batch, by its campaign's channel."""
    sender = SENDERS[campaign.channel]
    client = sender.client(clients, run["tenant_id"])
    key = CHANNEL_PAYLOAD[campaign.channel]
    payload = payloads_.get(key)
    if client is None or payload is None:
        why = "channel_unavailable" if client is None else f"content has no {key} payload"
        return {d["delivery_id"]: ("failed", None, why, None) for d in batch}
    return sender.send(Call(run, campaign, batch, client, payload, signer, public_url))


def _deduped(send) -> dict[str, Any]:
    """An OA mass send; 45065 (clientmsgid exists) means an earlier attempt went out."""
    try:
        return send()
    except WeComError as exc:
        if exc.errcode != 45065:
            raise
        return {"msg_id": "sent-before"}


def _mass_result(batch, result: dict[str, Any], key: str) -> Outcome:
    failed = set(result.get("fail_list") or [])
    msgid = result.get("msgid") or None
    return {
        d["delivery_id"]: (
            ("failed", None, "refused by the platform (fail_list)", None)
            if d[key] in failed
            else ("sent", None, None, msgid)
        )
        for d in batch
    }
