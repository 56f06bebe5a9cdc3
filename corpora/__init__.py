"""The data folder; ships inside the package as `textgen.corpora` for its bundled tiny_shakespeare."""
