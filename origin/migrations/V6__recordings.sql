-- Replays: a broadcast is recorded unless its owner opts out. Only adds
-- (see V1).
ALTER TABLE broadcasts ADD COLUMN recorded BOOLEAN NOT NULL DEFAULT true;
