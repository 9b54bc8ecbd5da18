"""Embeddings: the `embed` job type into pgvector (long documents cut into chunks), search by each
document's nearest chunk, and the search queries the API asks the workers to embed."""
