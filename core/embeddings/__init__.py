"""Embeddings: the `embed` job type into pgvector, and the search queries the API asks the workers to embed."""
