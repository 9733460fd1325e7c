-- When the contact last acted themselves (docs/domain.md "Activity"): an enrichment fetch, a staff
-- edit or a send result is a fact, not activity. last_event_at stays the newest event of any kind
-- (the clock derivation runs on). Null until the contact acts.
ALTER TABLE contacts ADD COLUMN last_active_at timestamptz;

-- The stored events, classified as shared/envelope.py EVENT_KINDS does (customer actions; a chat
-- join or leave is the staff's when a member pulled the contact in or an admin removed them).
-- tests/unit/segment/test_facts.py keeps this list equal to CUSTOMER_ACTIONS.
UPDATE contacts c SET last_active_at = a.last
FROM (
    SELECT tenant_id, contact_id, max(occurred_at) AS last
    FROM events
    WHERE type IN (
        'oa.subscribe', 'oa.unsubscribe', 'oa.scan', 'oa.click', 'oa.view', 'oa.location',
        'oa.message', 'wecom.contact.added', 'wecom.contact.half_added',
        'wecom.contact.follow_user_deleted', 'wecom.chat.member_joined', 'wecom.chat.member_left',
        'link.clicked', 'biz.registered', 'biz.demo.requested', 'biz.trial.started',
        'biz.contract.signed', 'biz.order.paid', 'biz.order.refunded', 'biz.payment.received',
        'biz.webinar.registered', 'biz.webinar.attended', 'biz.event.attended',
        'biz.content.downloaded', 'biz.complaint.filed'
    )
      AND NOT (type = 'wecom.chat.member_joined' AND attributes->>'join_scene' = '0')
      AND NOT (type = 'wecom.chat.member_left' AND attributes->>'quit_scene' = '1')
    GROUP BY tenant_id, contact_id
) a
WHERE c.tenant_id = a.tenant_id AND c.contact_id = a.contact_id;
