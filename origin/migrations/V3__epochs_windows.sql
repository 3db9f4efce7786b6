-- Surviving the loss of an origin. Only adds (see V1).
--
-- Every change of the origin holding a window bumps its epoch: an origin
-- that lost a window (paused, cut off, drained) cannot write its counters
-- any more, and stands down when its beat says so.
ALTER TABLE owners ADD COLUMN epoch BIGINT NOT NULL DEFAULT 1;

-- Each live rendition's counters, written by its holder at every segment
-- close, so that the origin taking a broadcast over continues its
-- playlists (MSNs rising, the discontinuity sequence kept).
CREATE TABLE window_counters (
    broadcast_id TEXT NOT NULL,
    rendition TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    -- JSON, as `hls::saved::Counters` serializes it.
    counters TEXT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (broadcast_id, rendition)
);
