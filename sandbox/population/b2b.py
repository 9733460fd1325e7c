"""The B2B journey: one step of a company's buying committee.

A company moves through the stages of ``B2B_STAGES`` (first contact -> whitepapers -> webinars ->
trial/POC with a WeCom project group -> quote -> customer with contracts, invoices, orders and
payments); between stage changes its members engage on the channel they are on. A company may
stall at a stage (then it mostly touches, sometimes leaves) and may pay its invoices late.
"""

from __future__ import annotations

from sandbox.population.actions import Emitter
from sandbox.population.model import B2B_STAGES, STAGE, Chat, Company, Person
from sandbox.population.texts import (
    B2B_CASES,
    B2B_CONTENT,
    B2B_MENUS,
    B2B_SCENES,
    B2B_SPECS,
    OFFLINE_EVENTS,
    WEBINARS,
    article_url,
    random_id,
)

PAYMENT_TERMS_S = 30 * 86400  # net 30: an unpaid invoice is overdue after that
REORDER_AFTER_S = 21 * 86400  # a customer orders again at most every three weeks


def _reach(emit: Emitter, c: Company, p: Person) -> None:
    """First contact of one committee member: follows the OA or is added on WeCom."""
    rng = emit.rng
    if rng.random() < 0.55:
        scene = rng.choice(B2B_SCENES) if rng.random() < 0.7 else None
        emit.subscribe(p, scene)
    else:
        emit.add_on_wecom(p, rng.choice(("expo2026", "sales_visit", "referral")))
    if not p.registered:
        p.registered = True
        emit.biz(
            "biz.contact.updated",
            p.person_id,
            {"name": p.name, "title": p.title, "company": c.name},
            p,
            c,
        )


def _member(emit: Emitter, c: Company, roles: tuple[str, ...] = ()) -> Person:
    pool = [m for m in c.members if m.role in roles] if roles else []
    p = emit.rng.choice(pool or c.members)
    if not (p.followed or p.added):
        _reach(emit, c, p)
    return p


def _touch(emit: Emitter, c: Company, p: Person) -> None:
    """A light touch on whichever channel the person is on."""
    rng = emit.rng
    if p.followed and (not p.added or rng.random() < 0.7):
        r = rng.random()
        if r < 0.35:
            emit.event(p, "CLICK", EventKey=rng.choice(B2B_MENUS))
        elif r < 0.7:
            emit.event(p, "VIEW", EventKey=article_url(rng))
        elif r < 0.9:
            question = rng.choice(
                (
                    f"您好，我是{c.name}的{p.title}，想了解贵司方案的报价和实施周期。",
                    f"{c.name} 想要一份私有化部署的安全白皮书 <PDF>，谢谢",
                    "Can you share the API docs & SLA terms?",
                    "有没有同行业的客户案例？",
                )
            )
            emit.oa(p, "oa.message", "text", Content=question)
        else:
            emit.oa(
                p,
                "oa.message",
                "link",
                Title=f"{c.name}：产线数字化需求说明",
                Description="内部需求 & 评估要点",
                Url=f"https://docs.example.cn/share?id={random_id(rng, 10)}&from=wechat",
            )
    elif p.added and not p.followed and rng.random() < 0.3:  # shown the OA: they follow it
        emit.subscribe(p, f"sales_card_{p.owner_userid}")
    elif p.added and rng.random() < 0.25:  # the salesperson notes the title or a remark
        emit.contact(p, "edit_external_contact")
    else:
        title, fmt = rng.choice(B2B_CONTENT)
        emit.biz(
            "biz.content.downloaded",
            p.person_id,
            {"title": title, "format": fmt},
            p,
            c,
        )


def company_step(c: Company, emit: Emitter) -> None:
    rng = emit.rng
    stalled = c.stall_stage is not None and c.stage >= c.stall_stage
    if c.stage == 0:
        c.stage = 1
        _reach(emit, c, c.members[0])
        emit.biz(
            "biz.account.updated",
            c.key,
            {
                "company": c.name,
                "industry": c.industry,
                "size": c.size,
                "lifecycle": c.lifecycle,
                "city": c.city,
            },
            company=c,
        )
        emit.biz(
            "biz.lead.created",
            c.members[0].person_id,
            {"source": rng.choice(("expo", "website", "referral")), "owner": c.owner_userid},
            c.members[0],
            c,
        )
        return
    if stalled:
        _stalled(c, emit)
        return
    if c.stage < STAGE["customer"] and rng.random() < 0.25:
        c.stage += 1
        _enter_stage(c, emit)
    else:
        _engage(c, emit)


def _stalled(c: Company, emit: Emitter) -> None:
    rng = emit.rng
    p = rng.choice(c.members)
    r = rng.random()
    if r < 0.6:
        if p.followed or p.added:
            _touch(emit, c, p)
        elif rng.random() < 0.3:  # comes back, e.g. scans a booth QR code at a trade fair
            _reach(emit, c, p)
    elif r < 0.75 and p.followed:
        emit.event(p, "unsubscribe", EventKey="")
        p.followed = False
    elif r < 0.85 and p.added:
        emit.contact(p, rng.choice(("del_follow_user", "del_external_contact")))
        p.added = False
    elif r < 0.9 and c.chat_id:  # the project group is closed
        chat = emit.population.chat(c.chat_id)
        fields = {
            "Event": "change_external_chat",
            "ChatId": chat.chat_id,
            "ChangeType": "dismiss",
        }
        emit.add("wecom", "wecom.chat.dismissed", fields, chat.chat_id)
        for m in c.members:
            if chat.chat_id in m.chats:
                m.chats.remove(chat.chat_id)
        emit.population.chats.remove(chat)
        c.chat_id = None


def _enter_stage(c: Company, emit: Emitter) -> None:
    rng, stage = emit.rng, B2B_STAGES[c.stage]
    if stage == "interest":
        p = _member(emit, c, ("technical", "business"))
        title, fmt = rng.choice(B2B_CONTENT)
        emit.biz("biz.content.downloaded", p.person_id, {"title": title, "format": fmt}, p, c)
    elif stage == "webinar":
        title = rng.choice(WEBINARS)
        webinar_id = f"WBN-{rng.randint(1000, 9999)}"
        for p in rng.sample(c.members, k=min(len(c.members), rng.randint(1, 3))):
            if not (p.followed or p.added):
                _reach(emit, c, p)
            attrs = {"webinar_id": webinar_id, "title": title}
            emit.biz("biz.webinar.registered", p.person_id, attrs, p, c)
            if rng.random() < 0.7:
                emit.biz("biz.webinar.attended", p.person_id, dict(attrs), p, c)
    elif stage == "trial":
        p = _member(emit, c, ("technical",))
        emit.biz("biz.demo.requested", p.person_id, {"product": "ACME MES"}, p, c)
        attrs = {"trial_id": f"POC-{rng.randint(10000, 99999)}", "product": "ACME MES"}
        emit.biz("biz.trial.started", p.person_id, {**attrs, "days": 30}, p, c)
        c.chat_id = "wr" + random_id(rng, 28)
        chat = Chat(c.chat_id, c.owner_userid)
        emit.population.chats.append(chat)
        joined = [m for m in c.members if m.added]
        if not joined:
            emit.add_on_wecom(p, "poc_group")
            joined = [p]
        emit.chat(chat, joined, join=True)
    elif stage == "quote":
        p = _member(emit, c, ("procurement", "finance", "decision_maker"))
        emit.biz("biz.trial.ended", p.person_id, {"outcome": "success"}, p, c)
        c.quote_amount = float(rng.randrange(80_000, 2_000_000, 5_000))
        attrs = {
            "quote_id": f"Q-{rng.randint(100000, 999999)}",
            "amount": c.quote_amount,
            "currency": "CNY",
        }
        emit.biz("biz.quote.sent", p.person_id, attrs, p, c)
    elif stage == "customer":
        p = _member(emit, c, ("decision_maker",))
        amount = c.quote_amount or float(rng.randrange(80_000, 2_000_000, 5_000))
        contract = f"HT-{rng.randint(100000, 999999)}"
        emit.biz(
            "biz.contract.signed",
            p.person_id,
            {"contract_id": contract, "amount": amount, "currency": "CNY"},
            p,
            c,
        )
        _order(c, emit, amount)


def _order(c: Company, emit: Emitter, amount: float) -> None:
    rng = emit.rng
    p = _member(emit, c, ("procurement", "finance"))
    invoice = f"INV-{rng.randint(1000000, 9999999)}"
    order = f"SO-{rng.randint(1000000, 9999999)}"
    money = {"amount": amount, "currency": "CNY"}
    emit.biz("biz.invoice.issued", c.key, {"invoice_id": invoice, **money}, company=c)
    c.last_order_at = emit.t
    if c.pays_late:
        c.open_invoices.append((invoice, amount, emit.t))
    else:
        attrs = {"order_id": order, "invoice_id": invoice, **money}
        emit.biz("biz.order.paid", p.person_id, attrs, p, c)
        emit.biz("biz.payment.received", c.key, {"invoice_id": invoice, **money}, company=c)


def _engage(c: Company, emit: Emitter) -> None:
    rng, stage = emit.rng, B2B_STAGES[c.stage]
    if stage == "customer":
        r = rng.random()
        invoice_due = c.open_invoices and emit.t - c.open_invoices[0][2] > PAYMENT_TERMS_S
        if invoice_due and r < 0.35:
            invoice, amount, issued = c.open_invoices[0]
            days = (emit.t - issued - PAYMENT_TERMS_S) // 86400
            if days >= 1 and rng.random() < 0.6:
                attrs = {"invoice_id": invoice, "amount": amount, "currency": "CNY"}
                emit.biz(
                    "biz.invoice.overdue",
                    c.key,
                    {**attrs, "days_overdue": int(days)},
                    company=c,
                )
            else:
                c.open_invoices.pop(0)
                p = _member(emit, c, ("finance",))
                attrs = {"invoice_id": invoice, "amount": amount, "currency": "CNY"}
                emit.biz("biz.payment.received", c.key, attrs, company=c)
                order = {"order_id": f"SO-{rng.randint(1000000, 9999999)}", **attrs}
                emit.biz("biz.order.paid", p.person_id, order, p, c)
            return
        reorder = emit.t - c.last_order_at > REORDER_AFTER_S
        if r < 0.45 and reorder:  # a repeat order, an upsell or a renewal
            _order(c, emit, float(rng.randrange(20_000, 600_000, 1_000)))
            return
        if 0.45 <= r < 0.5:
            p = _member(emit, c)
            name, city = rng.choice(OFFLINE_EVENTS)
            attrs = {"event": name, "city": city}
            emit.biz("biz.event.attended", p.person_id, attrs, p, c)
            return
    if c.chat_id and rng.random() < 0.25:
        chat = emit.population.chat(c.chat_id)
        outside = [m for m in c.members if m.added and m.external_userid not in chat.members]
        if outside:
            emit.chat(chat, outside[: rng.randint(1, 2)], join=True)
            return
    roles = {
        "aware": ("technical", "business"),
        "interest": ("technical", "business", "decision_maker"),
        "webinar": ("technical", "business", "compliance"),
        "trial": ("technical", "compliance", "business"),
        "quote": ("procurement", "finance", "decision_maker", "compliance"),
    }.get(stage, ())
    p = _member(emit, c, roles)
    if stage in ("trial", "quote") and rng.random() < 0.3:
        title, fmt = rng.choice(B2B_SPECS if p.role != "finance" else B2B_CASES)
        emit.biz("biz.content.downloaded", p.person_id, {"title": title, "format": fmt}, p, c)
    else:
        _touch(emit, c, p)
