-- Forgotten people whose erasure is not complete yet (a photo that could not be deleted): a keyed hash of the
-- name, so start-up never enrols them again from the photo folder, and the audit marker. Dropped once every
-- copy is gone. The key of that hash is a random secret of this store.
CREATE TABLE IF NOT EXISTS tombstones (key TEXT PRIMARY KEY, marker TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS secrets (name TEXT PRIMARY KEY, value TEXT NOT NULL);
