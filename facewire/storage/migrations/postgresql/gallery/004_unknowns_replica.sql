-- The replica that kept each unknown face: clusters are numbered by each replica, so in the shared gallery a
-- cluster is (replica, cluster). The same column as sqlite/gallery/004 ('' for rows from before).
ALTER TABLE unknowns ADD COLUMN IF NOT EXISTS replica TEXT NOT NULL DEFAULT '';
