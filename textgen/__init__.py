"""textgen: character-level and subword text generation with recurrent language models.

`textgen.load(name)` and `textgen.train(...)` are the Python API (see `textgen.api`); they are
imported on first use, so that `import textgen` stays fast.
"""

__version__ = "0.1.0"

__all__ = ["load", "train"]


def __getattr__(name: str):
    if name in __all__:
        from textgen import api

        return getattr(api, name)
    raise AttributeError(f"module 'textgen' has no attribute {name!r}")
