-- Forgotten people whose erasure is not complete yet: the same tables as sqlite/gallery/002.
CREATE TABLE IF NOT EXISTS tombstones (key TEXT PRIMARY KEY, marker TEXT NOT NULL, created DOUBLE PRECISION NOT NULL);
CREATE TABLE IF NOT EXISTS secrets (name TEXT PRIMARY KEY, value TEXT NOT NULL);
