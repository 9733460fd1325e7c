"""Upgrading to group tasks (outreach migration 0021): a WeCom group send handed over before the
upgrade and still in its 3-day window is registered, so its tasks, results and budget count are
followed (docs/platform.md "Group sends are staff tasks"); an older or finished one is not."""

from __future__ import annotations

import psycopg

from shared.migrations import apply, discover, migrations_dir


def test_sends_in_their_window_at_the_upgrade_are_followed(stack, unique):
    schema = f"t_{unique}_up"
    every = discover(migrations_dir("outreach"))
    apply(stack.dsn, schema, [m for m in every if m.version < 21])
    with psycopg.connect(stack.dsn, options=f"-c search_path={schema}", autocommit=True) as conn:
        conn.execute("INSERT INTO campaigns (tenant_id, campaign_id, name, channel, audience, "
                     "content, trigger) VALUES ('acme', 'c1', 'weekly', 'wecom_single', '{}', "
                     "'{}', '{}')")  # fmt: skip
        (run,) = conn.execute("INSERT INTO campaign_runs (tenant_id, campaign_id, trigger_key, "
                              "due_at) VALUES ('acme', 'c1', 'k', now()) RETURNING run_id"
                              ).fetchone()  # fmt: skip
        for i, (status, age, msgid) in enumerate([
            ("sent", "1 hour", "msgRecent"), ("sent", "1 hour", "msgRecent"),
            ("sent", "5 days", "msgOld"), ("delivered", "1 hour", "msgDone"),
        ]):  # fmt: skip
            conn.execute(
                "INSERT INTO deliveries (tenant_id, run_id, campaign_id, recipient_kind, "
                "recipient_id, channel, status, msgid, sent_at) VALUES ('acme', %s, 'c1', "
                "'contact', %s, 'wecom_single', %s, %s, now() - %s::interval)",
                (run, f"ct{i}", status, msgid, age),
            )
    assert apply(stack.dsn, schema, every) == [m.version for m in every if m.version >= 21]
    with psycopg.connect(stack.dsn, options=f"-c search_path={schema}") as conn:
        rows = conn.execute(
            "SELECT msgid, run_id, next_poll_at IS NOT NULL FROM group_messages"
        ).fetchall()
    assert [(r[0], r[1]) for r in rows] == [("msgRecent", run)]
    assert rows[0][2]  # polled at the next tick
