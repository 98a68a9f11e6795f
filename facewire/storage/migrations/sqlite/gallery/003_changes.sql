-- The change log and applied commands of a gallery shared by replicas: the same tables as
-- postgresql/gallery/003 (SQLite stores, one per replica, keep them empty).
CREATE TABLE IF NOT EXISTS changes (
    seq INTEGER PRIMARY KEY, kind TEXT NOT NULL,
    ids TEXT NOT NULL, command TEXT NOT NULL, replica TEXT NOT NULL, ts REAL NOT NULL);
CREATE TABLE IF NOT EXISTS commands (key TEXT PRIMARY KEY, ts REAL NOT NULL);
CREATE INDEX IF NOT EXISTS commands_ts ON commands (ts);
