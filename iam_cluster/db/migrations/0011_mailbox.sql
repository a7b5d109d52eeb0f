-- 0011_mailbox: each side's view of its messages (one row per message and side that has not deleted
-- it), so the inbox queries read the caller's flags without repeating which side is theirs.

CREATE VIEW mailbox AS
SELECT m.id, m.sender_id, m.recipient_id, m.subject, m.body, m.created_at,
       m.recipient_id AS owner_id, true AS incoming, m.read_at IS NOT NULL AS is_read,
       m.recipient_starred AS is_starred, m.recipient_archived AS is_archived
FROM messages AS m
WHERE NOT m.recipient_deleted
UNION ALL
SELECT m.id, m.sender_id, m.recipient_id, m.subject, m.body, m.created_at,
       m.sender_id AS owner_id, false AS incoming, true AS is_read,
       m.sender_starred AS is_starred, m.sender_archived AS is_archived
FROM messages AS m
WHERE NOT m.sender_deleted AND m.sender_id IS DISTINCT FROM m.recipient_id;
