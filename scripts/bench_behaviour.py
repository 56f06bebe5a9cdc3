"""How a sentiment classifier behaves on short sentences built to test one capability each
(CheckList-style: negation of negative and of positive words, negation at a distance, contrast both
ways, intensifiers, other domains; `textgen/classify/behaviour.py`), on the tuning templates and on
the held-out ones that no choice was made on: each capability's pass rate and its failures' mean
confidence, for each --features choice of the model.

    OMP_NUM_THREADS=1 taskset -c 0 python scripts/bench_behaviour.py --model sentiment
"""

from __future__ import annotations

import dataclasses

import harness

from textgen.classify.behaviour import PARTS, cases, report, unique
from textgen.recipes.models import load


def main() -> None:
    parser = harness.parser(__doc__, threads=1)
    parser.add_argument("--model", default="sentiment", help="a classifier: bundled name, run folder or .pt")
    parser.add_argument("--features", default="recurrent,ngram,both", help="the --features choices to run")
    parser.add_argument("--parts", default=",".join(PARTS))
    args = harness.parse(parser, quick={"features": "both"})
    classifier = load(args.model)
    saved = classifier.model.config
    results = {}
    for features in args.features.split(","):
        classifier.model.config = dataclasses.replace(saved, features=features)
        for part in args.parts.split(","):
            found = unique(cases(part))
            probabilities = classifier.probabilities([case.text for case in found])
            names = classifier.label_names
            labelled = [(case, names[row.argmax()], float(row.max())) for case, row in zip(found, probabilities)]
            results.setdefault(features, {})[part] = {
                "pass_rate": round(sum(label == case.label for case, label, _ in labelled) / len(labelled), 4),
                "capabilities": report(labelled)}
    classifier.model.config = saved
    brief = {features: {part: {name: figures["pass_rate"] for name, figures in result["capabilities"].items()}
                        for part, result in parts.items()} for features, parts in results.items()}
    harness.report(args, {"model": args.model, "pass_rates": brief, "results": results})


if __name__ == "__main__":
    main()
