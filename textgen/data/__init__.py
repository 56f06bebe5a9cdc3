"""Text in: corpora, tokenizers, hashed n-grams and the batches that feed a model."""
