-- Messages and notifications API (api/messages.py, api/notifications.py): every query is scoped to the caller.
--
-- Each side of a message keeps its own flags (migration 0002): read_at, recipient_deleted,
-- recipient_starred and recipient_archived belong to the recipient; sender_deleted, sender_starred and
-- sender_archived to the sender. The caller's side is the recipient's when recipient_id is theirs.

-- name: messages_create
INSERT INTO messages (sender_id, recipient_id, subject, body)
VALUES (%(sender_id)s, %(recipient_id)s, %(subject)s, %(body)s)
RETURNING *

-- name: messages_notify
INSERT INTO notifications (user_id, kind, payload)
VALUES (%(user_id)s, %(kind)s, %(payload)s)
RETURNING *

-- name: messages_list
-- The caller's view of their messages, newest first; ``folder`` is inbox, sent, starred or archived.
-- Keyset pagination: rows strictly older than (cursor_at, cursor_id) when a cursor is given.
SELECT v.* FROM mailbox AS v
WHERE v.owner_id = %(user_id)s
  AND (%(q)s::text IS NULL OR v.subject ILIKE %(q)s ESCAPE '\' OR v.body ILIKE %(q)s ESCAPE '\')
  AND (%(cursor_at)s::timestamptz IS NULL OR (v.created_at, v.id) < (%(cursor_at)s, %(cursor_id)s::uuid))
  AND CASE %(folder)s::text
          WHEN 'inbox' THEN v.incoming AND NOT v.is_archived
          WHEN 'sent' THEN NOT v.incoming AND NOT v.is_archived
          WHEN 'starred' THEN v.is_starred
          WHEN 'archived' THEN v.is_archived
      END
  AND (NOT %(unread)s OR NOT v.is_read)
ORDER BY v.created_at DESC, v.id DESC
LIMIT %(limit)s

-- name: messages_get
-- One message as the caller sees it; nothing when they are neither side or deleted it on their side.
SELECT * FROM mailbox WHERE id = %(id)s AND owner_id = %(user_id)s

-- name: messages_set_read
-- Recipient side only; counts the messages whose read state changed.
UPDATE messages SET read_at = CASE WHEN %(read)s THEN now() ELSE NULL END
WHERE id = ANY(%(ids)s::uuid[]) AND recipient_id = %(user_id)s AND NOT recipient_deleted
  AND (read_at IS NULL) = %(read)s
RETURNING id

-- name: messages_set_flag
-- Sets one flag to ``value`` on the caller's side of ``ids`` (visible ones only); returns the messages whose
-- flag changed. {recipient_flag}/{sender_flag} are that flag's two columns (recipient_starred and
-- sender_starred, or the archived pair), filled in with sql.Identifier. One UPDATE: concurrent writers
-- to the same rows wait on the row locks.
UPDATE messages SET
    {recipient_flag} = CASE WHEN recipient_id = %(user_id)s THEN %(value)s::boolean ELSE {recipient_flag} END,
    {sender_flag} = CASE WHEN recipient_id = %(user_id)s THEN {sender_flag} ELSE %(value)s::boolean END
WHERE id = ANY(%(ids)s::uuid[])
  AND ((recipient_id = %(user_id)s AND NOT recipient_deleted AND {recipient_flag} <> %(value)s::boolean)
       OR (sender_id = %(user_id)s AND recipient_id <> %(user_id)s AND NOT sender_deleted
           AND {sender_flag} <> %(value)s::boolean))
RETURNING id

-- name: messages_delete_side
-- Marks ``ids`` deleted on the caller's side (clearing that side's flags); returns the messages that changed.
UPDATE messages SET
    recipient_deleted = recipient_deleted OR recipient_id = %(user_id)s,
    recipient_starred = recipient_starred AND recipient_id <> %(user_id)s,
    recipient_archived = recipient_archived AND recipient_id <> %(user_id)s,
    sender_deleted = sender_deleted OR sender_id IS NOT DISTINCT FROM %(user_id)s,
    sender_starred = sender_starred AND sender_id IS DISTINCT FROM %(user_id)s,
    sender_archived = sender_archived AND sender_id IS DISTINCT FROM %(user_id)s
WHERE id = ANY(%(ids)s::uuid[])
  AND ((recipient_id = %(user_id)s AND NOT recipient_deleted)
       OR (sender_id = %(user_id)s AND NOT sender_deleted))
RETURNING id

-- name: messages_purge
-- Removes the rows of ``ids`` both sides have deleted (a sender whose account is gone counts as deleted).
DELETE FROM messages
WHERE id = ANY(%(ids)s::uuid[]) AND recipient_deleted AND (sender_deleted OR sender_id IS NULL)
RETURNING id

-- name: messages_stats
-- total: messages received (not deleted); unread: of those, unread; sent: messages sent (not deleted);
-- starred, archived: either side, as the caller flagged them.
SELECT count(*) FILTER (WHERE v.incoming) AS total,
       count(*) FILTER (WHERE v.incoming AND NOT v.is_read) AS unread,
       count(*) FILTER (WHERE v.is_starred) AS starred,
       count(*) FILTER (WHERE v.is_archived) AS archived,
       count(*) FILTER (WHERE NOT v.incoming) AS sent
FROM mailbox AS v
WHERE v.owner_id = %(user_id)s

-- name: notifications_list
-- The caller's notifications, newest first.
SELECT n.*, count(*) OVER () AS total
FROM notifications AS n
WHERE n.user_id = %(user_id)s
  AND (NOT %(unread)s OR n.read_at IS NULL)
ORDER BY n.created_at DESC, n.id DESC
LIMIT %(limit)s OFFSET %(offset)s

-- name: notifications_unread_count
SELECT count(*) AS unread FROM notifications
WHERE user_id = %(user_id)s AND read_at IS NULL

-- name: notifications_read
-- Marks one read (keeping the first read time); nothing when it is not the caller's.
UPDATE notifications SET read_at = coalesce(read_at, now())
WHERE id = %(id)s AND user_id = %(user_id)s
RETURNING *

-- name: notifications_read_all
UPDATE notifications SET read_at = now()
WHERE user_id = %(user_id)s AND read_at IS NULL
RETURNING id

-- name: messages_share_conversation
-- Whether two users have exchanged a message (either way): typing events go only to such peers.
SELECT EXISTS (
    SELECT 1 FROM messages
    WHERE (sender_id = %(a)s AND recipient_id = %(b)s) OR (sender_id = %(b)s AND recipient_id = %(a)s)
) AS shared
