"""Embeddings: the `embed` job type into pgvector (long documents cut into chunks), search by each
document's nearest chunk, the search queries the API asks the workers to embed, and the knowledge an
`ai_reply` answers from (RAG)."""
