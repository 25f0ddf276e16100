"""The guideline library: parsing, chunking, the catalog, embedding, the vector store per backend, ingestion."""
