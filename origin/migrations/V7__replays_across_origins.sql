-- One replay across origins. Only adds (see V1).
--
-- Each origin records what it packages on its own disk; these tables say
-- what every origin recorded, so that any origin serves the whole replay
-- (fetching each segment from the origin holding it).

-- A broadcast's replay: when it became one (nothing recorded later is part
-- of it, so that it never changes), and whether it was deleted (by its
-- owner, or by an origin's retention: a replay goes whole).
CREATE TABLE recordings (
    broadcast_id TEXT PRIMARY KEY,
    ended_at TIMESTAMPTZ,
    deleted_at TIMESTAMPTZ,
    -- The longest rendition, set when it ends.
    duration_secs DOUBLE PRECISION NOT NULL DEFAULT 0,
    -- Its last thumbnail (JPEG), from the origin it ended on.
    thumbnail BYTEA,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX recordings_updated ON recordings (updated_at);

-- One URI generation of one rendition: the origin that recorded it (its
-- segments are on that origin's disk) and its codec facts.
CREATE TABLE recording_runs (
    broadcast_id TEXT NOT NULL,
    rendition TEXT NOT NULL,
    generation TEXT NOT NULL,
    node_id TEXT NOT NULL,
    -- Base URL other origins fetch its segments from.
    url TEXT NOT NULL,
    -- JSON, as `recording::replay::Facts` serializes it.
    facts TEXT NOT NULL,
    PRIMARY KEY (broadcast_id, rendition, generation)
);

-- One recorded segment: its index line, and when the database heard of it.
CREATE TABLE recording_segments (
    broadcast_id TEXT NOT NULL,
    rendition TEXT NOT NULL,
    generation TEXT NOT NULL,
    msn BIGINT NOT NULL,
    -- JSON, as `recording::replay::Entry` serializes it.
    entry TEXT NOT NULL,
    duration_secs DOUBLE PRECISION NOT NULL,
    at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (broadcast_id, rendition, generation, msn)
);
