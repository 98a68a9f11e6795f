-- One gallery replica's store as the first gallery created it.
CREATE TABLE IF NOT EXISTS people (name TEXT PRIMARY KEY, created REAL NOT NULL, updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS embeddings (
    id INTEGER PRIMARY KEY, person TEXT NOT NULL, model TEXT NOT NULL, source TEXT NOT NULL,
    origin TEXT NOT NULL, vector BLOB NOT NULL, created REAL NOT NULL, UNIQUE (person, model, source));
CREATE TABLE IF NOT EXISTS negatives (
    id INTEGER PRIMARY KEY, person TEXT NOT NULL, model TEXT NOT NULL, source TEXT NOT NULL,
    origin TEXT NOT NULL, vector BLOB NOT NULL, created REAL NOT NULL, UNIQUE (person, model, source));
CREATE TABLE IF NOT EXISTS unknowns (
    id INTEGER PRIMARY KEY, model TEXT NOT NULL, node TEXT NOT NULL, seq INTEGER NOT NULL, ts REAL NOT NULL,
    cluster INTEGER NOT NULL, vector BLOB NOT NULL, UNIQUE (node, seq));
CREATE INDEX IF NOT EXISTS unknowns_ts ON unknowns (ts);
CREATE TABLE IF NOT EXISTS rejections (
    model TEXT NOT NULL, origin TEXT NOT NULL, source TEXT NOT NULL, reason TEXT NOT NULL,
    PRIMARY KEY (model, origin, source));
CREATE TABLE IF NOT EXISTS last_seen (person TEXT PRIMARY KEY, node TEXT NOT NULL, ts REAL NOT NULL);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY, ts REAL NOT NULL, op TEXT NOT NULL, actor TEXT NOT NULL, subject TEXT NOT NULL,
    details TEXT NOT NULL);
