"""Write sft_data.json: the demo's Alpaca-format file (alpaca.json, its first records) grown to 200
records for config/examples/sft-data.yaml. Every record is this project's own writing: small
tasks whose reference outputs are computed here, so each output is correct by construction.

    python resources/demo/sft_rewrite/make_sft_data.py
"""

from __future__ import annotations

import json
import random
from pathlib import Path

HERE = Path(__file__).parent
TOTAL = 200

NOUNS = [
    "river",
    "lantern",
    "teacher",
    "garden",
    "window",
    "engine",
    "basket",
    "city",
    "story",
    "bridge",
    "candle",
    "orchard",
    "ticket",
    "planet",
    "violin",
    "harbor",
    "pencil",
    "meadow",
    "tunnel",
    "kettle",
]
PLURAL_EXCEPTIONS = {"city": "cities", "story": "stories"}
OPPOSITES = [
    ("early", "late"),
    ("narrow", "wide"),
    ("ancient", "modern"),
    ("generous", "stingy"),
    ("fragile", "sturdy"),
    ("quiet", "loud"),
    ("shallow", "deep"),
    ("rough", "smooth"),
    ("empty", "full"),
    ("bright", "dim"),
    ("cheap", "expensive"),
    ("heavy", "light"),
    ("brave", "cowardly"),
    ("tidy", "messy"),
    ("rare", "common"),
    ("visible", "hidden"),
]
ACTIONS = [
    ("gardener", "planted", "the tulips"),
    ("baker", "sliced", "the bread"),
    ("pilot", "landed", "the plane"),
    ("student", "solved", "the puzzle"),
    ("painter", "finished", "the mural"),
    ("mechanic", "repaired", "the bicycle"),
    ("chef", "seasoned", "the soup"),
    ("librarian", "shelved", "the atlas"),
    ("farmer", "harvested", "the wheat"),
    ("engineer", "tested", "the pump"),
    ("editor", "shortened", "the article"),
    ("coach", "praised", "the team"),
]
SENTENCES = [
    "the morning train was late again",
    "a small fox crossed the empty road",
    "we packed sandwiches for the long hike",
    "the museum opens at nine on Sundays",
    "rain kept the children inside all afternoon",
    "my neighbor grows tomatoes on her balcony",
    "the old clock in the hall stopped at noon",
    "fresh snow covered the quiet village",
    "the choir practiced the new song twice",
    "our team finished the project before Friday",
]
ITEMS = [("notebooks", 3), ("apples", 2), ("stamps", 5), ("candles", 4), ("mugs", 6), ("pencils", 7)]


def arithmetic(rng: random.Random) -> dict:
    item, price = rng.choice(ITEMS)
    count = rng.randint(2, 12)
    return {
        "instruction": f"Each of the {item} costs {price} dollars. How much do {count} {item} cost?",
        "input": "",
        "output": f"{count} x {price} = {count * price} dollars.",
    }


def conversion(rng: random.Random) -> dict:
    kind = rng.choice(["km", "h", "kg"])
    n = rng.randint(2, 40)
    if kind == "km":
        return {
            "instruction": "Convert the distance to meters.",
            "input": f"{n} kilometers",
            "output": f"{n} kilometers is {n * 1000} meters.",
        }
    if kind == "h":
        return {
            "instruction": "How many minutes are in this many hours?",
            "input": f"{n} hours",
            "output": f"{n} hours is {n * 60} minutes.",
        }
    return {
        "instruction": "Express the weight in grams.",
        "input": f"{n} kilograms",
        "output": f"{n} kilograms is {n * 1000} grams.",
    }


def passive(rng: random.Random) -> dict:
    agent, verb, obj = rng.choice(ACTIONS)
    return {
        "instruction": "Rewrite the sentence in the passive voice.",
        "input": f"The {agent} {verb} {obj}.",
        "output": f"{obj[0].upper()}{obj[1:]} was {verb} by the {agent}.",
    }


def opposite(rng: random.Random) -> dict:
    a, b = rng.choice(OPPOSITES)
    a, b = (a, b) if rng.random() < 0.5 else (b, a)
    return {
        "instruction": f'Give the opposite of the word "{a}".',
        "input": "",
        "output": f'The opposite of "{a}" is "{b}".',
    }


def parity(rng: random.Random) -> dict:
    n = rng.randint(10, 999)
    return {
        "instruction": f"Is {n} an even or an odd number? Explain briefly.",
        "input": "",
        "output": f"{n} is {'even' if n % 2 == 0 else 'odd'}, because its last digit is {n % 10}.",
    }


def larger(rng: random.Random) -> dict:
    a, b = rng.sample(range(1, 500), 2)
    return {
        "instruction": "Which of the two numbers is larger?",
        "input": f"{a} and {b}",
        "output": f"{max(a, b)} is larger than {min(a, b)}.",
    }


def sort_numbers(rng: random.Random) -> dict:
    nums = rng.sample(range(1, 100), rng.randint(4, 7))
    return {
        "instruction": "Sort these numbers from smallest to largest.",
        "input": ", ".join(map(str, nums)),
        "output": ", ".join(map(str, sorted(nums))),
    }


def count_words(rng: random.Random) -> dict:
    s = rng.choice(SENTENCES)
    return {
        "instruction": "Count the words in the sentence.",
        "input": s[0].upper() + s[1:] + ".",
        "output": f"The sentence has {len(s.split())} words.",
    }


def plural(rng: random.Random) -> dict:
    noun = rng.choice(NOUNS)
    return {
        "instruction": f'What is the plural of "{noun}"?',
        "input": "",
        "output": f'The plural of "{noun}" is "{PLURAL_EXCEPTIONS.get(noun, noun + "s")}".',
    }


def reverse_words(rng: random.Random) -> dict:
    s = rng.choice(SENTENCES)
    return {
        "instruction": "Write the words of the sentence in reverse order.",
        "input": s,
        "output": " ".join(reversed(s.split())),
    }


MAKERS = [arithmetic, conversion, passive, opposite, parity, larger, sort_numbers, count_words, plural, reverse_words]


def records(seed: int = 23) -> list[dict]:
    demo = json.loads((HERE / "alpaca.json").read_text(encoding="utf-8"))
    out, seen = list(demo), {(r["instruction"], r["input"]) for r in demo}
    rng = random.Random(seed)
    for attempt in range(100 * TOTAL):  # makers with few distinct questions run dry: others fill in
        if len(out) == TOTAL:
            break
        rec = MAKERS[attempt % len(MAKERS)](rng)
        if (rec["instruction"], rec["input"]) not in seen:  # no duplicate question
            seen.add((rec["instruction"], rec["input"]))
            out.append(rec)
    return out


if __name__ == "__main__":
    path = HERE / "sft_data.json"
    path.write_text(json.dumps(records(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"{path}: {TOTAL} records")
