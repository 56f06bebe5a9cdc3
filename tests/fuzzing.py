"""What the file fuzzer and the command-line fuzzer share: a time limit for one case and the folder
they work in."""

import signal
from contextlib import contextmanager
from pathlib import Path

import datasets


class OverTime(BaseException):
    """A case still running past its limit (a BaseException, so no `except Exception` swallows it)."""


@contextmanager
def time_limit(seconds: float):
    """Raise OverTime in the block once `seconds` have passed."""
    def alarm(signum, frame):
        raise OverTime(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def work_folder(root: Path, patch) -> tuple[Path, Path]:
    """Make `root` the working folder and the home of the token and datasets caches (through `patch`, a
    pytest MonkeyPatch), with a tiny text and a tiny labelled csv in it; the two files' paths."""
    patch.chdir(root)
    patch.setenv("TEXTGEN_CACHE", str(root / "token-cache"))
    patch.setattr(datasets.config, "HF_DATASETS_CACHE", root / "datasets-cache")
    text = root / "tiny.txt"
    text.write_text("".join(f"the {word} sat on the mat.\n" for word in ("cat", "dog", "fox") * 60))
    labelled = root / "reviews.csv"
    labelled.write_text("text,label\n" + "".join(f"{word} film {i},{label}\n" for i in range(20)
                                                 for word, label in (("good", "pos"), ("bad", "neg"))))
    return text, labelled
