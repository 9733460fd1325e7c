"""A deterministic model of a tenant's audience, for `siyu simulate` (sandbox/simulator/) and
the fake WeChat API's seed (sandbox/fake_wechat/seed.py).

Pure: no I/O and no clock reads. Every random choice comes from the ``random.Random`` passed in,
so the same seed gives the same people, companies and actions, in the same order.

- B2B: companies, each with a buying committee of 2-6 people (titles in Chinese or English, one
  buying role each), moving through a journey: first contact (follows the OA or is added on WeCom
  by a salesperson) -> reads whitepapers -> webinars -> trial/POC -> quote -> customer (contract,
  invoices, orders and payments). Some companies stall at a stage; some pay late.
- B2C: consumers with a behaviour type (impulse buyer, researcher, discount chaser, loyal, lapsed,
  skeptic) who scan store QR codes, click menus, send messages, join WeCom customer groups and buy;
  some file complaints.

An ``Action`` describes one platform event in platform terms (the XML fields WeChat or WeCom would
send, or a business event); the simulator renders, signs and encrypts it. The journey mutates the
state of the people, companies and chats it is given (that is the model's memory), nothing else.

Modules: ``model`` (people, companies, chats, ``Population.generate``), ``texts`` (names, titles,
content and random IDs), ``actions`` (``Action`` and the ``Emitter`` of platform events),
``b2b`` and ``b2c`` (one step of a company or a consumer), ``journey`` (``action_stream``: who
acts when).
"""
