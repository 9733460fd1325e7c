"""The B2C journey: one step of a consumer, shaped by their behaviour type (``B2C_TYPES``).

A consumer first follows the OA (often by scanning a store QR code) and may register; then they
browse (menus, articles, questions, locations), get added on WeCom and join customer groups, and
buy at a rate that depends on their type: researchers read first, discount chasers hunt coupons,
lapsed customers drift away and unfollow, skeptics complain.
"""

from __future__ import annotations

from typing import Any

from sandbox.population.actions import Emitter
from sandbox.population.model import Person
from sandbox.population.texts import (
    B2C_COMPLAINTS,
    B2C_MENUS,
    B2C_PRODUCTS,
    B2C_QUESTIONS,
    B2C_SCENES,
    LOCATIONS,
    OPENID_CHARS,
    article_url,
    random_id,
)


def consumer_step(p: Person, emit: Emitter) -> None:
    rng = emit.rng
    if p.gone:
        if rng.random() < 0.3:
            emit.subscribe(p, rng.choice(B2C_SCENES))
        return
    if not p.followed:
        emit.subscribe(p, rng.choice(B2C_SCENES) if rng.random() < 0.75 else None)
        if rng.random() < 0.5:
            p.registered = True
            emit.biz("biz.registered", p.person_id, {"channel": "wechat_oa"}, p)
        return
    p.steps += 1
    kind = p.b2c_type
    if kind == "lapsed" and p.steps > p.lapse_after:
        if rng.random() < 0.4:
            emit.event(p, "unsubscribe", EventKey="")
            p.followed, p.gone = False, True
            if p.chats:
                chat = emit.population.chat(p.chats[0])
                emit.chat(chat, [p], join=False)
        return
    if not p.added and rng.random() < 0.15:
        emit.add_on_wecom(p, rng.choice(B2C_SCENES))
        return
    if p.added and not p.chats and emit.population.chats and rng.random() < 0.3:
        emit.chat(rng.choice(emit.population.chats), [p], join=True)
        return
    buy = {
        "impulse": 0.35,
        "researcher": 0.35 if p.reads >= p.read_before_buying else 0.0,
        "discount_chaser": 0.2,
        "loyal": 0.25,
        "lapsed": 0.2,
        "skeptic": 0.05,
    }.get(kind or "", 0.2)
    r = rng.random()
    if kind == "skeptic" and r < 0.12:
        _complain(p, emit)
    elif r < buy:
        _buy(p, emit)
    else:
        _browse(p, emit)


def _browse(p: Person, emit: Emitter) -> None:
    rng = emit.rng
    p.reads += 1
    r = rng.random()
    if p.b2c_type == "discount_chaser" and r < 0.5:
        if rng.random() < 0.6:
            emit.event(p, "CLICK", EventKey="MENU_COUPON")
        else:
            emit.oa(p, "oa.message", "text", Content="有优惠券吗？满减活动什么时候开始")
    elif r < 0.3:
        emit.event(p, "CLICK", EventKey=rng.choice(B2C_MENUS))
    elif r < 0.6:
        emit.event(p, "VIEW", EventKey=article_url(rng))
    elif r < 0.75:
        emit.oa(p, "oa.message", "text", Content=rng.choice(B2C_QUESTIONS))
    elif r < 0.82:
        lat, lng = rng.choice(LOCATIONS)
        emit.event(
            p,
            "LOCATION",
            Latitude=f"{lat + rng.uniform(-0.05, 0.05):.6f}",
            Longitude=f"{lng + rng.uniform(-0.05, 0.05):.6f}",
            Precision=f"{rng.uniform(10, 120):.6f}",
        )
    elif r < 0.9:
        emit.event(p, "SCAN", EventKey=rng.choice(B2C_SCENES), Ticket=emit.ticket())
    elif r < 0.95:
        media = random_id(rng, 64, OPENID_CHARS)
        emit.oa(
            p,
            "oa.message",
            "image",
            PicUrl=f"http://mmbiz.qpic.cn/mmbiz_jpg/{random_id(rng, 40)}/0",
            MediaId=media,
        )
    else:
        emit.oa(
            p,
            "oa.message",
            "link",
            Title="小红书 | 这家茶饮的桂花乌龙 & 茶点绝了",
            Description="种草分享",
            Url=f"https://www.xiaohongshu.com/explore/{random_id(rng, 24)}?xsec=1&src=wx",
        )


def _buy(p: Person, emit: Emitter) -> None:
    rng = emit.rng
    product, price = rng.choice(B2C_PRODUCTS)
    qty = rng.randint(1, 4) if p.b2c_type == "loyal" else rng.randint(1, 2)
    amount = round(price * qty, 2)
    attrs: dict[str, Any] = {
        "order_id": f"TB{rng.randint(10**11, 10**12 - 1)}",
        "amount": amount,
        "currency": "CNY",
        "items": [{"sku": product, "qty": qty}],
        "channel": rng.choice(("mini_program", "store", "mini_program")),
    }
    if p.b2c_type == "discount_chaser" or rng.random() < 0.1:
        discount = round(min(amount * 0.3, rng.choice((5.0, 10.0, 20.0))), 2)
        attrs["coupon"] = f"CPN-{rng.randint(1000, 9999)}"
        attrs["discount"] = discount
        attrs["amount"] = round(amount - discount, 2)
    p.orders += 1
    emit.biz("biz.order.paid", p.person_id, attrs, p)
    if rng.random() < 0.03:  # a dissatisfied customer
        _complain(p, emit, order=attrs)


def _complain(p: Person, emit: Emitter, order: dict | None = None) -> None:
    rng = emit.rng
    p.complaints += 1
    text = rng.choice(B2C_COMPLAINTS)
    attrs: dict[str, Any] = {
        "channel": rng.choice(("oa_message", "hotline", "review")),
        "text": text,
        "severity": rng.choice(("low", "medium", "high")),
    }
    if order:
        attrs["order_id"] = order["order_id"]
    emit.oa(p, "oa.message", "text", Content=text)
    emit.biz("biz.complaint.filed", p.person_id, attrs, p)
    if order and rng.random() < 0.5:
        refund = {"order_id": order["order_id"], "amount": order["amount"], "currency": "CNY"}
        emit.biz("biz.order.refunded", p.person_id, refund, p)
    if p.added and p.complaints >= 2 and rng.random() < 0.3:
        emit.contact(p, "del_follow_user")
        p.added = False
