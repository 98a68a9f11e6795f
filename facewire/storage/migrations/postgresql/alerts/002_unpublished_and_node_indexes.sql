-- The republish loop reads unpublished alerts by id, `facewire alerts --node` filters by node newest first:
-- a partial index keeps the first cheap however many published alerts pile up.
CREATE INDEX IF NOT EXISTS alerts_unpublished ON alerts (id) WHERE published = 0;
CREATE INDEX IF NOT EXISTS alerts_node_raised ON alerts (node, raised_at);
