-- The detection log as the first recorder created it (IF NOT EXISTS: a database from before versioning adopts it).
CREATE TABLE IF NOT EXISTS results (
    id INTEGER PRIMARY KEY,
    node TEXT NOT NULL, seq INTEGER NOT NULL, track INTEGER NOT NULL, frame INTEGER NOT NULL,
    ts REAL NOT NULL, decided_at REAL NOT NULL, recorded_at REAL NOT NULL,
    name TEXT NOT NULL, known INTEGER NOT NULL, score REAL NOT NULL, threshold REAL NOT NULL,
    gallery_version TEXT NOT NULL, model TEXT NOT NULL, candidates TEXT NOT NULL DEFAULT '[]',
    UNIQUE (node, seq)
);
CREATE INDEX IF NOT EXISTS results_ts ON results (ts);
CREATE INDEX IF NOT EXISTS results_name_ts ON results (name, ts);
CREATE INDEX IF NOT EXISTS results_node_ts ON results (node, ts);
CREATE INDEX IF NOT EXISTS results_known_ts ON results (known, ts);
CREATE TABLE IF NOT EXISTS confirmations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    node TEXT NOT NULL, seq INTEGER NOT NULL, truth TEXT, confirmed_at REAL NOT NULL,
    UNIQUE (node, seq)
);
