"""Behaviour tests of a sentiment classifier, in the style of CheckList (Ribeiro et al., ACL 2020):
short sentences built from templates, grouped by the capability they test (negation, contrast,
intensifiers, other domains), each with the label a reader would give it.

Every capability's frames and words come in two parts. The `tuning` part may be looked at while
building a model (its sentences may even be trained on); the `held_out` part never is: its frames
and its sentiment words are all other ones, so a model that passes it has learnt negation, not
these sentences. Neither part is drawn from any corpus.
"""

from __future__ import annotations

import dataclasses
import itertools
import random
from collections.abc import Iterator

PARTS = ("tuning", "held_out")

# Sentiment words: each part its own, none shared.
POSITIVE = {"tuning": ["good", "great", "excellent", "wonderful", "enjoyable", "funny", "brilliant", "moving",
                       "charming", "clever", "beautiful", "entertaining", "impressive", "delightful", "fantastic",
                       "amazing", "fun", "smart", "powerful", "stunning", "sweet", "fresh", "hilarious", "perfect",
                       "remarkable", "riveting", "satisfying", "inventive", "heartfelt", "polished", "refreshing",
                       "exciting", "magnificent", "elegant", "warm", "original", "intelligent", "gorgeous", "tender",
                       "exquisite", "absorbing", "haunting", "uplifting", "rich", "sharp", "fascinating", "strong",
                       "likable", "beloved", "outstanding"],
            "held_out": ["superb", "lovely", "gripping", "engaging", "touching", "witty", "splendid", "terrific",
                         "memorable", "thoughtful", "compelling", "marvelous"]}
NEGATIVE = {"tuning": ["bad", "terrible", "awful", "boring", "dull", "disappointing", "poor", "weak", "horrible",
                       "annoying", "stupid", "pointless", "tedious", "mediocre", "lame", "awkward", "silly", "ugly",
                       "flat", "predictable", "cliched", "hollow", "tired", "confusing", "incoherent", "overlong",
                       "dumb", "ridiculous", "worthless", "amateurish", "bloated", "cheap", "clunky", "grating",
                       "insufferable", "miserable", "rotten", "crude", "embarrassing", "lazy", "empty", "shallow",
                       "irritating", "laughable", "unfunny", "wooden", "messy", "unconvincing", "depressing", "wretched"],
            "held_out": ["dreadful", "lousy", "forgettable", "clumsy", "bland", "lifeless", "sloppy", "tiresome",
                         "painful", "pathetic", "unbearable", "shoddy"]}
# What a film review talks about (nouns are not sentiment: the parts share none all the same)
THINGS = {"tuning": ["film", "movie", "story", "acting", "script", "ending", "plot", "cast"],
          "held_out": ["picture", "dialogue", "soundtrack", "direction", "premise", "screenplay"]}
INTENSIFIERS = {"tuning": ["very", "really", "incredibly", "extremely"],
                "held_out": ["truly", "remarkably", "absolutely", "so"]}

# Frames by capability: {pos}/{neg} a sentiment word, {adj} either (the label follows the frame's
# `flips`), {thing}/{other} two different nouns, {very} an intensifier.
# Each entry: (frame, label it gives a positive word: "pos" as written, "neg" when the frame negates it)
FRAMES: dict[str, dict[str, list[str]]] = {
    "plain": {
        "tuning": ["the {thing} was {adj}.", "a {adj} {thing}.", "this {thing} is {adj}.", "I thought the {thing} "
                   "was {adj}."],
        "held_out": ["what a {adj} {thing}!", "I found the {thing} {adj}.", "the {thing} is simply {adj}.",
                     "overall, a {adj} {thing}."],
    },
    "negated_negative": {  # a negative word negated: a reader hears praise, or at least no blame
        "tuning": ["the {thing} was not {neg}.", "this {thing} is not {neg} at all.", "not {neg} at all.",
                   "the {thing} isn't {neg}.", "it was never {neg}.", "there is nothing {neg} about this {thing}.",
                   "I did not find the {thing} {neg}.", "the {thing} wasn't {neg} in the least.",
                   "it is not a {neg} {thing}.", "none of the {thing} was {neg}.", "the {thing} doesn't feel {neg}.",
                   "nobody will find this {thing} {neg}.", "the {thing} can't be called {neg}.",
                   "neither the {thing} nor the rest is {neg}."],
        "held_out": ["honestly, the {thing} was not {neg}.", "the {thing} is by no means {neg}.",
                     "I wouldn't call this {thing} {neg}.", "no one could say the {thing} was {neg}.",
                     "the {thing} never felt {neg}.", "nothing about the {thing} was {neg}.",
                     "the {thing} is not {neg}, not even a little."],
    },
    "negated_positive": {
        "tuning": ["the {thing} was not {pos}.", "this {thing} is not {pos} at all.", "not {pos} at all.",
                   "the {thing} isn't {pos}.", "it was never {pos}.", "there is nothing {pos} about this {thing}.",
                   "I did not find the {thing} {pos}.", "the {thing} wasn't {pos} in the least.",
                   "it is not a {pos} {thing}.", "none of the {thing} was {pos}.", "the {thing} doesn't feel {pos}.",
                   "nobody will find this {thing} {pos}.", "the {thing} can't be called {pos}.",
                   "neither the {thing} nor the rest is {pos}."],
        "held_out": ["honestly, the {thing} was not {pos}.", "the {thing} is by no means {pos}.",
                     "I wouldn't call this {thing} {pos}.", "no one could say the {thing} was {pos}.",
                     "the {thing} never felt {pos}.", "nothing about the {thing} was {pos}.",
                     "hardly a {pos} {thing}."],
    },
    "negation_at_a_distance": {  # the negation several words before the word it turns
        "tuning": ["I don't think the {thing} was {adj}.", "the {thing} was not, as the trailer suggested, {adj}.",
                   "I can't say that the {thing} is {adj}.", "I did not expect the {thing} to be so {adj}, and "
                   "it wasn't."],
        "held_out": ["I do not believe anyone would find the {thing} {adj}.",
                     "the {thing} was not, whatever the critics said, {adj}.",
                     "nobody I know thought the {thing} was {adj}.",
                     "I would never have described the {thing} as {adj}."],
    },
    "contrast": {  # the clause after the contrast carries the verdict: {pos} and {neg} swap places both ways
        "tuning": ["the {thing} was {first}, but the {other} was {second}.",
                   "a {first} {thing}, but a {second} {other}.",
                   "I expected the {thing} to be {first}, but it was {second}.",
                   "the {thing} is {first}, but overall the film is {second}."],
        "held_out": ["although the {thing} is {first}, the {other} is {second}.",
                     "the {thing} is {first}; however, the {other} is {second}.",
                     "the {thing} starts out {first}, yet it ends up {second}.",
                     "the {thing} looked {first} on paper, but the result is {second}."],
    },
    "intensifier": {
        "tuning": ["the {thing} was {very} {adj}.", "a {very} {adj} {thing}."],
        "held_out": ["the {thing} is {very} {adj}!", "I found the {thing} {very} {adj}."],
    },
    "products": {
        "tuning": ["this phone is {adj}.", "the blender I bought is {adj}.", "the laptop's battery is {adj}."],
        "held_out": ["this vacuum cleaner is {adj}.", "the headphones are {adj}.", "my new kettle is {adj}."],
    },
    "restaurants": {
        "tuning": ["the food was {adj}.", "our waiter was {adj}.", "this restaurant is {adj}."],
        "held_out": ["the dessert was {adj}.", "the service here is {adj}.", "dinner at this bistro was {adj}."],
    },
    "books": {
        "tuning": ["this novel is {adj}.", "the author's prose is {adj}.", "the book was {adj}."],
        "held_out": ["the memoir is {adj}.", "her new short stories are {adj}.", "the poems in it are {adj}."],
    },
}
# capabilities whose frames turn the sentiment word around
NEGATING = {"negated_negative", "negated_positive", "negation_at_a_distance"}


@dataclasses.dataclass(frozen=True)
class Case:
    """One sentence, the capability it tests, the part it belongs to and the label a reader gives it."""

    text: str
    capability: str
    part: str
    label: str  # "pos" or "neg"


def cases(part: str) -> list[Case]:
    """Every sentence of `part`'s templates, in a fixed order."""
    if part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}, got {part!r}")
    found = []
    for capability, parts in FRAMES.items():
        for frame in parts[part]:
            found.extend(Case(text, capability, part, label) for text, label in _expand(capability, frame, part))
    return found


def _expand(capability: str, frame: str, part: str) -> Iterator[tuple[str, str]]:
    """(sentence, label) for each filling of `frame`."""
    things, very = THINGS[part], INTENSIFIERS[part]
    words = [(word, "pos") for word in POSITIVE[part]] + [(word, "neg") for word in NEGATIVE[part]]
    flip = {"pos": "neg", "neg": "pos"}
    if capability == "contrast":
        for first, second in zip(POSITIVE[part], NEGATIVE[part]):
            for thing, other in itertools.permutations(things[:4], 2):
                fill = {"thing": thing, "other": other}
                yield _sentence(frame.format(**fill, first=first, second=second)), "neg"
                yield _sentence(frame.format(**fill, first=second, second=first)), "pos"
        return
    for (word, polarity), thing in itertools.product(words, things):
        if "{pos}" in frame and polarity != "pos" or "{neg}" in frame and polarity != "neg":
            continue
        fill = {"thing": thing, "adj": word, "pos": word, "neg": word}
        label = flip[polarity] if capability in NEGATING else polarity
        if "{very}" in frame:
            for intensifier in very:
                yield _sentence(frame.format(**fill, very=intensifier)), label
        else:
            yield _sentence(frame.format(**fill)), label


def _sentence(text: str) -> str:
    """Capitalised as a person types a sentence; "a" before a vowel is "an"."""
    for vowel in "aeiou":
        text = text.replace(f" a {vowel}", f" an {vowel}")
        if text.startswith(f"a {vowel}"):
            text = "an" + text[1:]
    return text[0].upper() + text[1:]


def unique(found: list[Case]) -> list[Case]:
    """`found` without repeated sentences (frames without a noun repeat), first kept."""
    seen: set[str] = set()
    return [case for case in found if not (case.text in seen or seen.add(case.text))]


def training_rows(per_capability: int = 400, seed: int = 0) -> list[tuple[str, str]]:
    """(text, label) rows of the tuning part to train on: up to `per_capability` sentences of each
    capability that concerns film reviews (no other domain: those stay a test of transfer), drawn
    evenly between the labels."""
    rng = random.Random(seed)
    rows = []
    for capability in FRAMES:
        if capability in ("products", "restaurants", "books"):
            continue
        found = unique([case for case in cases("tuning") if case.capability == capability])
        by_label = {label: [case for case in found if case.label == label] for label in ("pos", "neg")}
        by_label = {label: group for label, group in by_label.items() if group}
        for label, group in by_label.items():
            share = per_capability // len(by_label)
            rows += [(case.text, label) for case in rng.sample(group, min(len(group), share))]
    rng.shuffle(rows)
    return rows


def report(labelled: list[tuple[Case, str, float]]) -> dict[str, dict]:
    """Per capability: its cases, pass rate, and the failures' mean confidence in their wrong label
    (a sure wrong answer is worse than an unsure one), with the three surest failures; `labelled`
    holds each case with the label given and that label's probability."""
    by_capability: dict[str, list[tuple[Case, str, float]]] = {}
    for item in labelled:
        by_capability.setdefault(item[0].capability, []).append(item)
    summary = {}
    for capability, items in by_capability.items():
        failures = sorted((item for item in items if item[1] != item[0].label), key=lambda item: -item[2])
        summary[capability] = {
            "cases": len(items), "pass_rate": round(1 - len(failures) / len(items), 4),
            "failure_confidence": round(sum(item[2] for item in failures) / len(failures), 4) if failures else None,
            "surest_failures": [f"{case.text} -> {label} {probability:.3f}" for case, label, probability in
                                failures[:3]]}
    return summary
