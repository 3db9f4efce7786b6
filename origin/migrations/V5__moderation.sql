-- Chat moderation. Only adds (see V1).
--
-- Who sent each message, for time-outs and bans: the page's session and the
-- client's address. Never sent to clients; NULL for rows stored before V5.
ALTER TABLE chat_messages ADD COLUMN session_id TEXT;
ALTER TABLE chat_messages ADD COLUMN client_addr TEXT;

-- Every moderation action (who, what, when), in order: deletions, time-outs,
-- bans, lifts, slow mode, moderators appointed and dismissed. A room's state
-- (who may not send, slow mode, which tokens moderate) is derived from its
-- actions, so that every origin derives the same.
CREATE TABLE moderation_actions (
    id BIGSERIAL PRIMARY KEY,
    broadcast_id TEXT NOT NULL,
    -- RFC 3339 with microseconds, fixed width (see V1).
    at TEXT NOT NULL,
    -- JSON, as `store::moderation::Action` serializes it.
    body TEXT NOT NULL
);
CREATE INDEX moderation_actions_broadcast ON moderation_actions (broadcast_id, id);
