-- Several origins as one service: which origin holds each live window, and
-- how many viewers watch on each origin. Only adds (see V1).
CREATE TABLE owners (
    broadcast_id TEXT PRIMARY KEY,
    node_id TEXT NOT NULL,
    -- Base URL the other origins proxy the window's requests to.
    url TEXT NOT NULL,
    heartbeat TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX owners_by_node ON owners (node_id);

CREATE TABLE viewer_counts (
    node_id TEXT NOT NULL,
    broadcast_id TEXT NOT NULL,
    sessions BIGINT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (node_id, broadcast_id)
);
