-- The replica that kept each unknown face (the same column as postgresql/gallery/004; a SQLite store belongs
-- to one replica, so it stays '').
ALTER TABLE unknowns ADD COLUMN replica TEXT NOT NULL DEFAULT '';
