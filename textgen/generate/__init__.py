"""Text out of a language model: decoding controls, stepping, sampling, completion, copy checks."""
