-- Sightings and alerts as the first alert service created them; the incident key is UNIQUE.
CREATE TABLE IF NOT EXISTS sightings (
    rule TEXT NOT NULL, subject TEXT NOT NULL, node TEXT NOT NULL, seq INTEGER NOT NULL,
    track INTEGER NOT NULL, name TEXT NOT NULL, score REAL NOT NULL, ts REAL NOT NULL,
    PRIMARY KEY (rule, node, seq)
);
CREATE INDEX IF NOT EXISTS sightings_subject_ts ON sightings (rule, subject, ts);
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE, rule TEXT NOT NULL, subject TEXT NOT NULL, node TEXT NOT NULL,
    first_ts REAL NOT NULL, last_ts REAL NOT NULL, count INTEGER NOT NULL, raised_at REAL NOT NULL,
    payload BLOB NOT NULL, published INTEGER NOT NULL DEFAULT 0,
    acked_at REAL, acked_by TEXT, webhook TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS alerts_subject ON alerts (rule, subject, last_ts);
CREATE INDEX IF NOT EXISTS alerts_raised ON alerts (raised_at);
