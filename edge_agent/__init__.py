"""The edge agent: capture, detect, align, embed, track, de-duplicate and publish embeddings."""
