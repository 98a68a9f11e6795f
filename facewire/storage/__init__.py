"""Where the services persist: database URLs, versioned migrations (numbered SQL files per engine), PostgreSQL pool."""
