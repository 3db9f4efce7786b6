-- Running it in public: invite codes, the generated admin token's hash (in
-- `meta`, key 'admin_hash'), unlisted broadcasts and blocked chat terms.
-- Only adds (see V1).
CREATE TABLE invites (
    -- SHA-256 of the code; the code itself is shown once and never stored.
    code_hash TEXT PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    -- NULL: no limit.
    max_uses BIGINT,
    used BIGINT NOT NULL DEFAULT 0,
    -- RFC 3339 with microseconds, fixed width (see V1); NULL: never.
    expires_at TEXT,
    created_at TEXT NOT NULL
);

ALTER TABLE broadcasts ADD COLUMN unlisted BOOLEAN NOT NULL DEFAULT false;

-- Terms the broadcast's chat refuses: a JSON array of strings.
ALTER TABLE broadcasts ADD COLUMN blocked_terms TEXT NOT NULL DEFAULT '[]';
