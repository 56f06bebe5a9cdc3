"""textgen: character-level and subword text generation with recurrent language models."""

__version__ = "0.1.0"
