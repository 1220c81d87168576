"""The chapter's architectures: DotProduct, DotProductBias (embeddings and hand-made parameters),
EmbeddingDotBias, CollabNN, EmbeddingNN."""
