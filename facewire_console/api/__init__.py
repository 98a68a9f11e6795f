"""The versioned REST API (``/api/v1``): recognise, enrol and query over HTTP with API keys."""
