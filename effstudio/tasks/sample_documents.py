"""The shipped sample of the ``textclass`` task: survey reports whose class needs their first and last lines.

Every document is an inspector's report on a works (a mill or a quarry) written
from a small English grammar (no outside text; CC0, written for effstudio). The
class is the pair (site, verdict): the site is named in the opening lines and the
verdict (reopen or stay closed) in the closing lines, 1-4k tokens apart. The body
between them is filler about weather, people and repairs, with decoys: rumours
that some *other* works will reopen or stay closed, and passing mentions of mills
and quarries. So a word count cannot decide the class, and a model whose summary
token sees only a short window of the start gets the site right and guesses the
verdict, while kinds with global tokens or long reach can read both.

``python -m effstudio.tasks.sample_documents`` rewrites the shipped CSV; the same
seed gives the same bytes. ``short_rows`` gives the one-paragraph rows that
``effstudio bench data`` writes by the million.
"""

from __future__ import annotations

import csv
import random
import sys
from collections.abc import Iterator
from pathlib import Path

SAMPLE_DOCUMENTS = Path(__file__).with_name("texts") / "survey_reports.csv"
SEED = 15
DOCUMENTS = 350
SITES = ("mill", "quarry")
VERDICTS = ("reopen", "closed")
# (site, verdict) -> weight: uneven, so the majority class is about 30%, not 25%
CLASS_WEIGHTS = {("mill", "reopen"): 0.31, ("mill", "closed"): 0.25,
                 ("quarry", "reopen"): 0.24, ("quarry", "closed"): 0.20}
MIN_WORDS, MAX_WORDS = 850, 3300  # about 1,000 to 4,000 tokens for a BPE of a few thousand pieces

SYLLABLES = ("al", "bar", "bel", "cor", "dun", "el", "fen", "gar", "hal", "ing", "kel", "lor", "mar", "ned",
             "or", "pel", "quin", "ros", "sel", "tam", "ul", "ven", "wen", "yor", "zan", "ash", "brig", "cal",
             "der", "fal", "gor", "hen", "is", "jor", "lin", "mor", "nor", "pen", "rath", "stan", "tor", "wick")
PLACE_ENDINGS = ("ford", "by", "ton", "wick", "field", "stead", "moor", "combe", "ley", "brook", "dale", "haven")
ROLES = ("foreman", "carter", "miller", "mason", "clerk", "smith", "shepherd", "widow", "schoolmaster",
         "ferryman", "innkeeper", "reeve", "apprentice", "surveyor", "warden", "weaver", "baker", "tanner")
OTHER_WORKS = ("forge", "granary", "tannery", "ferry", "kiln", "brewery", "bridge", "chapel", "ropewalk",
               "dye house", "lime pit", "boatyard", "weir", "smithy", "saltworks")
THINGS = ("wheel", "sluice", "roof", "ledger", "cart", "crane", "ladder", "chimney", "gate", "pump", "fence",
          "lantern", "rope", "barrow", "axle", "beam", "chisel", "hammer", "lintel", "shutter", "culvert",
          "trestle", "pulley", "hopper", "winch", "drain", "stair", "wall", "path", "yard", "shed", "cellar")
MATERIALS = ("oak", "iron", "slate", "clay", "tin", "elm", "granite", "lead", "hemp", "brick", "flint", "copper")
ADJECTIVES = ("old", "narrow", "broken", "heavy", "crooked", "sturdy", "damp", "rusted", "freshly painted",
              "weathered", "silent", "busy", "cold", "muddy", "tidy", "cracked", "leaning", "patched", "bright",
              "dusty", "forgotten", "useful", "costly", "mossy", "sagging", "worn", "new", "greasy")
VERBS_PAST = ("mended", "measured", "counted", "inspected", "cleaned", "replaced", "painted", "tested",
              "carried", "examined", "questioned", "recorded", "sketched", "weighed", "moved", "tightened",
              "oiled", "lifted", "unloaded", "repaired", "checked", "noted", "described", "priced")
WEATHER = ("rain fell all morning", "a north wind rattled the shutters", "the river ran high and brown",
           "frost lay on the fields until noon", "the sun came out after a grey dawn", "fog hid the valley",
           "a warm wind blew from the south", "snow had settled on the hills", "the days were long and dry",
           "thunder rolled over the moor at dusk", "the lanes were deep in mud", "a light drizzle never stopped")
TIMES = ("On the first morning", "Later that week", "By the third day", "Towards evening", "At first light",
         "Before noon", "On the Sunday", "After the market", "Some days later", "That same afternoon",
         "In the last week", "Early on the Tuesday", "While the light lasted", "After supper")
SEASONS = ("spring", "summer", "autumn", "winter")
ADVERBS = ("slowly", "carefully", "quickly", "gladly", "quietly", "twice", "again", "at length", "in person",
           "without complaint", "with some trouble", "by lamplight")
FEELINGS = ("worried about the cost", "glad of the work", "proud of the old place", "tired of waiting",
            "curious about the visit", "doubtful of the plans", "eager to help", "wary of strangers")

OPENINGS = (
    "These notes concern the {site} at {place}.",
    "I was sent to look over the {site} at {place} this {season}.",
    "The {site} at {place} is the subject of this report.",
    "What follows is my account of the {site} near {place}.",
    "The council asked me to survey the {site} outside {place}.",
)
CLOSINGS = {
    "reopen": (
        "My advice, then, is that the works reopen before the {season} is out.",
        "In short, it is safe to reopen, and I see no reason to wait.",
        "I therefore recommend that the works reopen at once.",
        "On all I have seen, the works should reopen this {season}.",
    ),
    "closed": (
        "My advice, then, is that the works stay closed for another year.",
        "In short, it must remain closed until the repairs are paid for.",
        "I therefore recommend that the works stay closed.",
        "On all I have seen, the works should stay closed this {season}.",
    ),
}
RUMOURS = (
    "{name} the {role} said the {other} at {place} would reopen soon, though nobody knew who had said so first.",
    "At the inn they talked of the {other} at {place}, which has been closed since the flood.",
    "Some hoped the {other} would reopen by harvest; others thought it should stay closed for good.",
    "{name} asked whether the {other} at {place} was to remain closed, and I could not tell them.",
    "A carter on the {site} road said there was talk of work again, but he had heard it at a fair.",
    "The old {site} at {place} was pulled down long ago, and its stones went into the {other}.",
)
FILLERS = (
    "{time}, {weather}.",
    "{time}, I {verb} the {thing} with {name} the {role}.",
    "{name} the {role} {verb} the {adj} {thing} {adverb}.",
    "The {thing} by the {other} is {adj}, and the {material} {thing2} beside it is {adj2}.",
    "{name}, who keeps the {other} at {place}, was {feeling}.",
    "We {verb} the {material} {thing} and wrote the figures in the ledger.",
    "{time}, {name} showed me a {adj} {thing} that nobody had {verb} for years.",
    "There is a {adj} {thing} of {material} by the gate, and a {adj2} {thing2} behind the {other}.",
    "I {verb} the {thing} {adverb}; it was {adj} but it will serve.",
    "The {role} and the {role2} argued about the {thing} until {name} sent them home.",
    "{name} said the {thing} had been {verb} in the time of her grandmother.",
    "The road from {place} to {place2} is {adj}, and the carts go {adverb}.",
    "I paid the {role} two shillings for the {material} and a {adj} {thing}.",
    "{time}, the {role} {verb} the {thing2} while I {verb2} the {thing}.",
)
SIGN_OFFS = ("Signed, {name}, surveyor to the council.", "Written at {place}, {name}.",
             "I remain your servant, {name}.", "Copied fair by {name}, clerk.")


class _Writer:
    """Draws the words of one document from a seeded generator."""

    def __init__(self, rng: random.Random):
        self.rng = rng

    def name(self) -> str:
        parts = self.rng.randint(2, 3)
        return "".join(self.rng.choice(SYLLABLES) for _ in range(parts)).capitalize()

    def place(self) -> str:
        return (self.rng.choice(SYLLABLES) + self.rng.choice(PLACE_ENDINGS)).capitalize()

    def fill(self, template: str, **fixed: str) -> str:
        pick = self.rng.choice
        slots = {"name": self.name, "place": self.place, "place2": self.place, "role": lambda: pick(ROLES),
                 "role2": lambda: pick(ROLES), "other": lambda: pick(OTHER_WORKS), "thing": lambda: pick(THINGS),
                 "thing2": lambda: pick(THINGS), "material": lambda: pick(MATERIALS),
                 "adj": lambda: pick(ADJECTIVES), "adj2": lambda: pick(ADJECTIVES),
                 "verb": lambda: pick(VERBS_PAST), "verb2": lambda: pick(VERBS_PAST),
                 "weather": lambda: pick(WEATHER), "time": lambda: pick(TIMES), "season": lambda: pick(SEASONS),
                 "adverb": lambda: pick(ADVERBS), "feeling": lambda: pick(FEELINGS),
                 "site": lambda: pick(SITES)}
        values = {key: fixed.get(key) or make() for key, make in slots.items() if "{" + key + "}" in template}
        return template.format(**values)

    def body_sentence(self, rumour_chance: float) -> str:
        if self.rng.random() < rumour_chance:
            return self.fill(self.rng.choice(RUMOURS))
        return self.fill(self.rng.choice(FILLERS))


def survey_report(rng: random.Random, site: str, verdict: str) -> str:
    """One report (paragraphs split by blank lines): the site in its first lines, the verdict in its last."""
    writer = _Writer(rng)
    place = writer.place()
    target_words = int(MIN_WORDS + (MAX_WORDS - MIN_WORDS) * rng.random() ** 3)  # most are short, a few long
    opening = [f"Report to the council, {rng.choice(SEASONS)} of the year {rng.randint(1820, 1890)}.",
               writer.fill(rng.choice(OPENINGS), site=site, place=place)]
    if rng.random() < 0.5:  # the site's line is the second or the third sentence
        opening.insert(1, writer.fill(rng.choice(FILLERS)))
    closing = [writer.fill(rng.choice(CLOSINGS[verdict]))]
    if rng.random() < 0.7:
        closing.append(writer.fill(rng.choice(SIGN_OFFS)))
    paragraphs = [" ".join(opening)]
    words = sum(len(s.split()) for s in opening + closing)
    while words < target_words:
        paragraph = [writer.body_sentence(rumour_chance=0.08) for _ in range(rng.randint(3, 8))]
        words += sum(len(s.split()) for s in paragraph)
        paragraphs.append(" ".join(paragraph))
    lead_in = [writer.fill(rng.choice(FILLERS)) for _ in range(rng.randint(0, 2))]
    paragraphs.append(" ".join(lead_in + closing))
    return "\n\n".join(paragraphs)


def survey_reports(count: int = DOCUMENTS, seed: int = SEED) -> Iterator[tuple[str, str]]:
    """(text, label) pairs; the label is ``site_verdict``, e.g. ``mill_reopen``."""
    rng = random.Random(seed)
    classes = list(CLASS_WEIGHTS)
    weights = list(CLASS_WEIGHTS.values())
    for _ in range(count):
        site, verdict = rng.choices(classes, weights)[0]
        yield survey_report(rng, site, verdict), f"{site}_{verdict}"


def short_rows(count: int, seed: int = SEED) -> Iterator[tuple[str, str]]:
    """(text, label) rows of one short paragraph (about 40 words): the bench's stand-in for a big file."""
    rng = random.Random(seed)
    writer = _Writer(rng)
    for _ in range(count):
        site, verdict = rng.choice(SITES), rng.choice(VERDICTS)
        sentences = [writer.fill(rng.choice(OPENINGS), site=site), writer.body_sentence(rumour_chance=0.1),
                     writer.fill(rng.choice(CLOSINGS[verdict]))]
        yield " ".join(sentences), f"{site}_{verdict}"


def write_csv(path: Path, rows: Iterator[tuple[str, str]]) -> None:
    """A UTF-8 CSV with a header ``text,label``; written beside ``path`` first, then moved over it."""
    partial = path.with_name(path.name + ".partial")
    with partial.open("w", encoding="utf-8", newline="") as out:
        table = csv.writer(out, lineterminator="\n")
        table.writerow(("text", "label"))
        table.writerows(rows)
    partial.replace(path)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else SAMPLE_DOCUMENTS
    write_csv(path, survey_reports())
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
