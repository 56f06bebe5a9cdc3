"""Errors a user can cause. Each message says what happened, the bad value, and how to fix it."""

import re


class TextgenError(Exception):
    """A problem with the user's input or environment, said in one line: a line break the message
    quotes (a value as typed) is escaped, for the API's callers as for the CLI's."""

    def __str__(self) -> str:
        return one_line(super().__str__())


class ConfigError(TextgenError):
    """A flag or config value that is invalid or contradicts another."""


class CorpusError(TextgenError):
    """A corpus that cannot be found, read or used."""


class TokenizerError(TextgenError):
    """Text that a tokenizer cannot be built from or applied to."""


class CheckpointError(TextgenError):
    """A checkpoint that is missing, corrupt, foreign or of the wrong kind."""


class TrainingError(TextgenError):
    """Training that cannot go on (a non-finite loss, a corpus too small for one batch)."""


_LINE_BREAKS = re.compile("[\n\r\v\f\x1c-\x1e\x85\u2028\u2029]")  # what str.splitlines splits at


def one_line(text: str) -> str:
    """`text` with its line breaks escaped (\\n), so that an error quoting what the user typed stays one line."""
    return _LINE_BREAKS.sub(lambda match: repr(match.group())[1:-1], text)
