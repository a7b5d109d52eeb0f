-- 0002_message_flags: per-side starred/archived flags on messages (each side sees only its own).

ALTER TABLE messages
    ADD COLUMN sender_starred     boolean NOT NULL DEFAULT false,
    ADD COLUMN sender_archived    boolean NOT NULL DEFAULT false,
    ADD COLUMN recipient_starred  boolean NOT NULL DEFAULT false,
    ADD COLUMN recipient_archived boolean NOT NULL DEFAULT false;

-- The starred and archived folders of each side (inbox and sent use the *_created_at_idx of 0001).
CREATE INDEX messages_recipient_starred_idx ON messages (recipient_id, created_at DESC)
    WHERE recipient_starred AND NOT recipient_deleted;
CREATE INDEX messages_recipient_archived_idx ON messages (recipient_id, created_at DESC)
    WHERE recipient_archived AND NOT recipient_deleted;
CREATE INDEX messages_sender_starred_idx ON messages (sender_id, created_at DESC)
    WHERE sender_starred AND NOT sender_deleted;
CREATE INDEX messages_sender_archived_idx ON messages (sender_id, created_at DESC)
    WHERE sender_archived AND NOT sender_deleted;
