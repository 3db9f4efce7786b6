-- Broadcasts, stream-key hashes, chat history and the installation secret.
-- Migrations only ever add: an old and a new binary share one database
-- during a rolling deploy.
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value BYTEA NOT NULL
);

CREATE TABLE broadcasts (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    description TEXT NOT NULL,
    status TEXT NOT NULL,
    -- RFC 3339 with microseconds, fixed width: string order is time order.
    created_at TEXT NOT NULL,
    started_at TEXT,
    ended_at TEXT,
    modified_at TEXT NOT NULL,
    peak_viewers BIGINT NOT NULL DEFAULT 0,
    owner_hash TEXT NOT NULL,
    key_version INTEGER NOT NULL DEFAULT 0
);

-- SHA-256 of a stream key -> its broadcast; keys themselves are never stored.
CREATE TABLE stream_keys (
    key_hash TEXT PRIMARY KEY,
    broadcast_id TEXT NOT NULL REFERENCES broadcasts (id)
);

CREATE TABLE chat_messages (
    id BIGSERIAL PRIMARY KEY,
    broadcast_id TEXT NOT NULL,
    user_name TEXT NOT NULL,
    text TEXT NOT NULL,
    at TEXT NOT NULL,
    streamer BOOLEAN NOT NULL
);

CREATE INDEX chat_messages_by_broadcast ON chat_messages (broadcast_id, id);
