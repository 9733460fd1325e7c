"""What the journey emits: ``Action`` (one platform event in platform terms) and ``Emitter``,
which turns a person's or chat's change into the fields WeChat, WeCom or a CRM would send, with
strictly increasing simulated times.

The emitter's verbs (``subscribe``, ``add_on_wecom``, ``chat``...) also update the model's state
they report (followed, added, chat members), so a journey step cannot forget one of the two.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Any

from sandbox.population.model import Chat, Company, Person, Population
from sandbox.population.texts import ID_CHARS, random_id

# The source channel of each scene people add staff through (docs/domain.md "Channel codes").
SCENE_CHANNELS = {
    "expo2026": "expo", "sales_visit": "sales_card", "referral": "referral", "poc_group": "event",
    "store_sh01": "store", "store_sh02": "store", "store_bj01": "store", "store_gz03": "store",
    "mall_popup": "event", "package_card": "store",
}  # fmt: skip


def code_state(scene: str) -> str:
    """The state of the scene's channel code, as Siyu issues them (``<channel>.<10 chars>``,
    shared/source_channels.py): deterministic, so the population draws nothing more."""
    digest = hashlib.sha1(scene.encode()).hexdigest()  # noqa: S324 - an id, not security
    return f"{SCENE_CHANNELS.get(scene, 'other')}.{digest[:10]}"


@dataclass(frozen=True)
class Action:
    """One platform event, before rendering.

    kind 'oa': ``fields`` are the inner XML elements after ToUserName (FromUserName is the openid,
    then MsgType, Event...); ``oa_slot`` picks which of the tenant's Official Accounts receives it.
    kind 'wecom': ``fields`` are the elements after MsgType (Event, ChangeType, UserID...); lists
    (MemChangeList) become one ``<Item>`` per value.
    kind 'biz': ``fields`` has idempotency_key, type, identity and attributes (occurred_at is
    rendered from ``at`` in the tenant's time zone).
    ``type`` is the envelope type ingest should produce (e.g. 'oa.subscribe', 'biz.order.paid').
    """

    kind: str
    type: str
    at: int
    fields: dict[str, Any]
    subject: str = ""
    oa_slot: int = 0


class Emitter:
    """Collects one step's actions; ``t`` moves forward a few seconds to minutes per action."""

    def __init__(self, population: Population, rng: random.Random, sim_time: int):
        self.population, self.rng, self.t = population, rng, sim_time
        self.actions: list[Action] = []

    def add(self, kind: str, type_: str, fields: dict, subject: str, oa_slot: int = 0) -> None:
        self.actions.append(Action(kind, type_, self.t, fields, subject, oa_slot))
        self.t += self.rng.randint(3, 240)

    def oa(self, p: Person, type_: str, msg_type: str, **fields: Any) -> None:
        body: dict[str, Any] = {"FromUserName": p.openid, "MsgType": msg_type, **fields}
        if msg_type != "event":
            body["MsgId"] = self.population.next_msg_id(self.rng)
        self.add("oa", type_, body, p.person_id, p.oa_slot)

    def event(self, p: Person, event: str, **fields: Any) -> None:
        type_ = {"subscribe": "oa.subscribe", "unsubscribe": "oa.unsubscribe", "SCAN": "oa.scan"}
        self.oa(p, type_.get(event, f"oa.{event.lower()}"), "event", Event=event, **fields)

    def ticket(self) -> str:
        return "gQ" + random_id(self.rng, 62, ID_CHARS) + "=="

    def subscribe(self, p: Person, scene: str | None) -> None:
        if scene:
            self.event(p, "subscribe", EventKey=f"qrscene_{scene}", Ticket=self.ticket())
        else:
            self.event(p, "subscribe", EventKey="")
        p.followed, p.gone = True, False

    def contact(self, p: Person, change: str, **extra: Any) -> None:
        fields = {
            "Event": "change_external_contact",
            "ChangeType": change,
            "UserID": p.owner_userid,
            "ExternalUserID": p.external_userid,
            **extra,
        }
        kind = {
            "add_external_contact": "wecom.contact.added",
            "edit_external_contact": "wecom.contact.edited",
            "del_external_contact": "wecom.contact.deleted",
            "del_follow_user": "wecom.contact.follow_user_deleted",
        }[change]
        self.add("wecom", kind, fields, p.person_id)

    def add_on_wecom(self, p: Person, scene: str) -> None:
        welcome = random_id(self.rng, 43, ID_CHARS)
        self.contact(p, "add_external_contact", State=code_state(scene), WelcomeCode=welcome)
        p.added = True

    def chat(self, chat: Chat, people: list[Person], join: bool) -> None:
        if not chat.created:
            chat.created = True
            chat.mem_ver = random_id(self.rng, 32, "0123456789abcdef")
            fields = {
                "Event": "change_external_chat",
                "ChatId": chat.chat_id,
                "ChangeType": "create",
            }
            self.add("wecom", "wecom.chat.created", fields, chat.chat_id)
        ids = [p.external_userid for p in people]
        last, chat.mem_ver = chat.mem_ver, random_id(self.rng, 32, "0123456789abcdef")
        fields = {
            "Event": "change_external_chat",
            "ChatId": chat.chat_id,
            "ChangeType": "update",
            "UpdateDetail": "add_member" if join else "del_member",
        }
        if join:
            fields["JoinScene"] = self.rng.choice((0, 3))
        else:
            fields["QuitScene"] = self.rng.choice((0, 0, 1))
        fields.update(MemChangeCnt=len(ids), MemChangeList=ids, LastMemVer=last)
        fields["CurMemVer"] = chat.mem_ver
        for p in people:
            if join:
                chat.members.append(p.external_userid)
                p.chats.append(chat.chat_id)
            else:
                chat.members.remove(p.external_userid)
                p.chats.remove(chat.chat_id)
        type_ = "wecom.chat.member_joined" if join else "wecom.chat.member_left"
        self.add("wecom", type_, fields, chat.chat_id)

    def biz(
        self,
        type_: str,
        subject: str,
        attributes: dict[str, Any],
        person: Person | None = None,
        company: Company | None = None,
    ) -> None:
        identity: dict[str, str] = {}
        if person is not None:
            identity["crm_id"] = person.crm_id
            if person.unionid:
                identity["unionid"] = person.unionid
        if company is not None:
            identity["account_key"] = company.key
        fields = {
            "idempotency_key": self.population.next_key(),
            "type": type_,
            "identity": identity,
            "attributes": attributes,
        }
        self.add("biz", type_, fields, subject)
