"""Sample quality against temperature for the bundled character models (`shakespeare`, what `textgen
sample` uses, and `english`), beside the same measures of their validation text in pieces as long.

For each model and temperature: --samples samples of --length characters from no prompt (sample i
drawn with seed --seed + i, as `textgen sample --num-samples` draws them), and, per sample, the median of:
- bits per character under the model itself, and under --reference (`english`, the general model: for
  `shakespeare`'s samples a judge that did not write them; a text holding a character the reference
  never saw is left out of its figure);
- made-up words: the share of its words (letters and inner apostrophes, lower-cased) that are not
  in the model's training text;
- mixed-case words: words of two or more letters that are neither lower-case, upper-case nor
  capitalised ("meN", "ANdice"), the glitch the default temperature showed; too rare for a median, so
  per 1,000 words of all the samples together, the share of samples with one, and the first few;
- repeated trigrams: the share of its word trigrams already seen earlier in the same text (loops).
The validation text, in as many pieces as long (fewer where it is short), gives each figure for text
the model did not write. Never asserts.

    python scripts/bench_temperature.py [--samples 16 --length 2000 --temperatures 0.7,0.8,0.9,1.0]
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import harness

from textgen.api import load
from textgen.config import SampleConfig
from textgen.data.corpus import bundled_corpus, resolve_data_dir

WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)*")


def words(text: str) -> list[str]:
    return WORD.findall(text)


def mixed_case(word: str) -> bool:
    """Neither lower-case, upper-case nor capitalised: "meN", "ANdice" (a word of one letter never is)."""
    letters = word.replace("'", "")
    return len(letters) > 1 and not (letters.islower() or letters.isupper() or letters.istitle())


def text_measures(text: str, vocabulary: set[str]) -> dict:
    """Made-up, mixed-case and repeated-trigram shares of `text`."""
    found = words(text)
    lowered = [word.lower() for word in found]
    trigrams = list(zip(lowered, lowered[1:], lowered[2:]))
    seen, repeated = set(), 0
    for trigram in trigrams:
        repeated += trigram in seen
        seen.add(trigram)
    glitches = [word for word in found if mixed_case(word)]
    return {"made_up_words": sum(word not in vocabulary for word in lowered) / max(len(found), 1),
            "repeated_trigrams": repeated / max(len(trigrams), 1), "glitches": glitches, "words": len(found)}


def jsonl_texts(paths: list[Path]) -> str:
    return "\n".join(json.loads(line)["text"] for path in paths for line in path.open(encoding="utf-8"))


def corpus_texts(name: str) -> tuple[str, str]:
    """(training text, validation text) of the model `name`: tiny Shakespeare as bundled; for english, the
    gutenberg books and the IMDb training reviews from the data folder ($TEXTGEN_DATA)."""
    if name == "shakespeare":
        folder = bundled_corpus("tiny_shakespeare")
        return (folder / "train.txt").read_text(encoding="utf-8"), (folder / "validation.txt").read_text(encoding="utf-8")
    data = resolve_data_dir(None)
    train = jsonl_texts(sorted((data / "gutenberg").glob("train-*.jsonl")) + sorted((data / "imdb").glob("train-*.jsonl")))
    return train.replace("<br />", "\n"), jsonl_texts([data / "gutenberg" / "validation.jsonl"])


def bits_per_char(generator, text: str) -> float | None:
    """Bits per character of `text` under `generator`, None where it holds a character the model never saw."""
    if any(char not in generator.tokenizer.chars for char in set(text)):
        return None
    return generator.score(text)["bits_per_char"]


def summary(records: list[dict]) -> dict:
    """Each figure's median over the texts (None where no text has it), and the mixed-case words of all
    of them together: too rare for a median to show."""
    figures = [key for key in records[0] if key not in ("glitches", "words")]
    glitches = [word for record in records for word in record["glitches"]]
    return {**{key: harness.median([r[key] for r in records if r[key] is not None], 4)
               if any(r[key] is not None for r in records) else None for key in figures},
            "mixed_case_per_1000_words": round(1000 * len(glitches) / sum(r["words"] for r in records), 2),
            "texts_with_mixed_case": round(sum(bool(r["glitches"]) for r in records) / len(records), 3),
            "mixed_case_examples": glitches[:8]}


def main() -> None:
    parser = harness.parser(__doc__, seed=0)
    parser.add_argument("--samples", type=int, default=16, help="samples per model and temperature (default: 16)")
    parser.add_argument("--length", type=int, default=2000, help="characters per sample (default: 2000)")
    parser.add_argument("--temperatures", default="0.7,0.8,0.9,1.0", help="comma-separated (default: %(default)s)")
    parser.add_argument("--models", default="shakespeare,english", help="bundled character models (default: "
                                                                       "%(default)s)")
    parser.add_argument("--reference", default="english", help="the model that scores every sample too "
                                                                "(default: %(default)s)")
    args = harness.parse(parser, quick={"samples": 2, "length": 300, "temperatures": "0.8,1.0"})
    temperatures = [float(value) for value in args.temperatures.split(",")]
    names = args.models.split(",")
    generators = {name: load(name, device="cpu") for name in {*names, args.reference}}
    results = {}
    for name in names:
        train, validation = corpus_texts(name)
        vocabulary = {word.lower() for word in words(train)}

        def measured(text: str) -> dict:
            return {"bits_per_char_self": bits_per_char(generators[name], text),
                    "bits_per_char_reference": bits_per_char(generators[args.reference], text),
                    **text_measures(text, vocabulary)}

        count = max(min(args.samples, len(validation) // args.length), 1)  # pieces that do not overlap
        step = len(validation) // count
        pieces = [validation[i * step:i * step + args.length] for i in range(count)]
        rows = {"validation text": summary([measured(piece) for piece in pieces])}
        harness.progress({"model": name, "validation text": rows["validation text"]})
        for temperature in temperatures:
            texts = generators[name].samples(length=args.length, temperature=temperature, seed=args.seed,
                                             num_samples=args.samples)
            rows[f"temperature {temperature:g}"] = summary([measured(text) for text in texts])
            harness.progress({"model": name, "temperature": temperature, **rows[f"temperature {temperature:g}"]})
        results[name] = {"training_vocabulary_words": len(vocabulary), "rows": rows}
    # every other sampling setting as `textgen sample` has it today: what the figures were drawn with
    settings = {name: value for name, value in dataclasses.asdict(SampleConfig()).items()
                if name not in ("length", "temperature", "seed", "num_samples")}
    harness.report(args, {"reference": args.reference, "other_settings": settings, "models": results})


if __name__ == "__main__":
    main()
