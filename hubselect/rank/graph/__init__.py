"""The matching graph of models and datasets, and node2vec+ embeddings of it (optional evidence)."""
