"""The classifier service: identify embeddings against a FAISS index of enrolled faces."""
