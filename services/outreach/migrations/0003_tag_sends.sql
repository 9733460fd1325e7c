-- OA mass send by user tag (mass/sendall): the recipient is the tag; the platform resolves its
-- followers, so no per-person exposure is recorded for it.
ALTER TABLE deliveries DROP CONSTRAINT deliveries_recipient_kind_check;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_recipient_kind_check
    CHECK (recipient_kind IN ('contact', 'group', 'tag'));
