"""Bundled models: weights (.pt, plain data) and their model cards (.md)."""
