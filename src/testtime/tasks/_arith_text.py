"""Words for the `arith` task: names, things, and one sentence template per step of a story.

Kept apart from the generator so the numbers (`arith.py`) and the wording (here) can be tuned separately.
A story is a *family* (things someone collects, money, a bakery); each family has templates for the opening
sentence, for each operation, and for the question. Templates use `str.format` fields:

    {name} {He} {he} {His} {his} {him}   the person and their pronouns
    {friend}                             another person (never `name`)
    {item} {item1}                       the thing, plural and singular ("dollars" for money)
    {n} {k}                              the running value before the step, and the step's operand

Several templates per slot keep questions from repeating; the generator picks one at random.
"""

from __future__ import annotations

__all__ = ["NAMES", "FAMILIES", "Family"]

from dataclasses import dataclass, field

# (name, pronoun set); half "she", half "he" so the pronoun templates get exercised both ways.
NAMES: list[tuple[str, str]] = [
    ("Ava", "she"),
    ("Mia", "she"),
    ("Lena", "she"),
    ("Sofia", "she"),
    ("Nora", "she"),
    ("Emma", "she"),
    ("Zoe", "she"),
    ("Ruby", "she"),
    ("Hana", "she"),
    ("Priya", "she"),
    ("Maya", "she"),
    ("Lucy", "she"),
    ("Grace", "she"),
    ("Amara", "she"),
    ("Ines", "she"),
    ("Julia", "she"),
    ("Chloe", "she"),
    ("Aisha", "she"),
    ("Tom", "he"),
    ("Sam", "he"),
    ("Leo", "he"),
    ("Omar", "he"),
    ("Ben", "he"),
    ("Jack", "he"),
    ("Noah", "he"),
    ("Kai", "he"),
    ("Ravi", "he"),
    ("Marco", "he"),
    ("Liam", "he"),
    ("Diego", "he"),
    ("Ethan", "he"),
    ("Felix", "he"),
    ("Hugo", "he"),
    ("Kenji", "he"),
    ("Yusuf", "he"),
    ("Max", "he"),
]

PRONOUNS: dict[str, dict[str, str]] = {
    "she": {"He": "She", "he": "she", "His": "Her", "his": "her", "him": "her"},
    "he": {"He": "He", "he": "he", "His": "His", "his": "his", "him": "him"},
}


@dataclass
class Family:
    """Templates for one kind of story; every slot has at least one template."""

    items: list[tuple[str, str]] = field(default_factory=list)
    """(singular, plural) names of the thing being counted."""
    start: list[str] = field(default_factory=list)
    """Opening sentence giving the starting value `{n}`."""
    start_product: list[str] = field(default_factory=list)
    """Opening sentence that is itself a multiplication: `{n}` groups of `{k}` (used when the first step is `*`)."""
    steps: dict[str, list[str]] = field(default_factory=dict)
    """Sentences for one step, keyed by operation: "+", "-", "*", "/"."""
    question: list[str] = field(default_factory=list)
    """Final question asking for the running value."""
    question_groups: list[tuple[str, str]] = field(default_factory=list)
    """(step, question) pairs where the last division is told as grouping: "packs them into bags of {k}." +
    "How many bags?" (empty: unused)."""


_COUNTED = Family(
    items=[
        ("marble", "marbles"),
        ("sticker", "stickers"),
        ("pencil", "pencils"),
        ("shell", "shells"),
        ("stamp", "stamps"),
        ("card", "cards"),
        ("apple", "apples"),
        ("book", "books"),
        ("coin", "coins"),
        ("button", "buttons"),
        ("toy car", "toy cars"),
        ("crayon", "crayons"),
        ("rock", "rocks"),
        ("bead", "beads"),
        ("ribbon", "ribbons"),
        ("balloon", "balloons"),
        ("leaf", "leaves"),
    ],
    start=[
        "{name} has {n} {item}.",
        "{name} starts the day with {n} {item}.",
        "{name} keeps {n} {item} in a box.",
        "{name} collected {n} {item} last year.",
    ],
    start_product=[
        "{name} has {n} bags with {k} {item} in each bag.",
        "{name} has {n} boxes, and each box holds {k} {item}.",
        "{name} buys {n} packs of {item} with {k} {item} in each pack.",
    ],
    steps={
        "+": [
            "{He} buys {k} more {item}.",
            "{friend} gives {him} {k} {item}.",
            "{He} finds {k} more {item}.",
            "{He} wins {k} {item} in a game.",
            "{He} gets {k} more {item} as a gift.",
        ],
        "-": [
            "{He} gives {k} {item} to {friend}.",
            "{He} sells {k} of {his} {item}.",
            "{He} loses {k} {item}.",
            "{He} uses {k} {item} for a school project.",
            "{friend} takes {k} of the {item}.",
        ],
        "*": [
            "{friend} trades {him} {k} {item} for every {item1} {he} has.",
            "By the end of the month, {he} has {k} times as many {item} as before.",
            "Each of {his} {item} is swapped for {k} new ones.",
        ],
        "/": [
            "{He} splits {his} {item} into {k} equal piles and keeps only one pile.",
            "{He} keeps only 1 out of every {k} {item} and gives the rest away.",
            "{He} shares the {item} equally among {k} children, {him} included, and keeps {his} share.",
        ],
    },
    question=[
        "How many {item} does {name} have now?",
        "How many {item} does {name} have at the end?",
        "How many {item} does {name} end up with?",
    ],
    question_groups=[
        ("{He} then packs all of {his} {item} into bags of {k}.", "How many bags does {he} fill?"),
        ("{He} then puts the {item} in rows of {k}.", "How many rows does {he} make?"),
    ],
)

_MONEY = Family(
    items=[("dollar", "dollars")],
    start=[
        "{name} has ${n}.",
        "{name} has ${n} in {his} piggy bank.",
        "{name} has saved ${n}.",
    ],
    start_product=[
        "{name} works {n} hours and earns ${k} each hour.",
        "{name} sells {n} old games for ${k} each.",
    ],
    steps={
        "+": [
            "{He} earns ${k} walking dogs.",
            "{His} grandmother gives {him} ${k}.",
            "{He} gets ${k} for doing chores.",
            "{friend} pays {him} back ${k}.",
        ],
        "-": [
            "{He} spends ${k} on a book.",
            "{He} buys a toy for ${k}.",
            "{He} pays ${k} for lunch.",
            "{He} gives ${k} to {friend}.",
        ],
        "*": [
            "By the end of the summer, {he} has {k} times as much money as before.",
            "A lucky week makes {his} money grow to {k} times as much.",
        ],
        "/": [
            "{He} puts the money into {k} equal envelopes and keeps just one envelope.",
            "{He} splits the money equally between {k} people, {him} included, and keeps {his} part.",
        ],
    },
    question=[
        "How many dollars does {name} have now?",
        "How much money, in dollars, does {name} have at the end?",
    ],
    question_groups=[],
)

_BAKERY = Family(
    items=[
        ("muffin", "muffins"),
        ("cookie", "cookies"),
        ("cupcake", "cupcakes"),
        ("bagel", "bagels"),
        ("roll", "rolls"),
        ("pie", "pies"),
        ("donut", "donuts"),
        ("pretzel", "pretzels"),
    ],
    start=[
        "{name} bakes {n} {item} in the morning.",
        "{name}'s shop opens with {n} {item}.",
        "There are {n} {item} in {name}'s bakery.",
    ],
    start_product=[
        "{name} bakes {n} trays of {item} with {k} {item} on each tray.",
        "{name} fills {n} baskets with {k} {item} each.",
    ],
    steps={
        "+": [
            "{He} bakes {k} more {item}.",
            "{friend} brings {him} {k} {item}.",
            "{He} makes another {k} {item} for the afternoon.",
        ],
        "-": [
            "{He} sells {k} {item}.",
            "{His} family eats {k} {item}.",
            "{He} gives {k} {item} to {friend}.",
            "{He} drops {k} {item} on the floor and throws them away.",
        ],
        "*": [
            "A big order comes in, so {he} ends up with {k} times as many {item} as {he} had.",
            "{He} cuts every {item1} into {k} small pieces and counts each piece as a mini {item1}.",
        ],
        "/": [
            "{He} packs the {item} into {k} equal boxes and keeps only one box in the shop.",
            "{He} sends all but one out of every {k} {item} to a cafe.",
        ],
    },
    question=[
        "How many {item} does {name} have now?",
        "How many {item} are left in the shop?",
        "How many {item} does {name} have at the end of the day?",
    ],
    question_groups=[
        ("{He} then packs all the {item} into boxes of {k}.", "How many boxes does {he} fill?"),
    ],
)

FAMILIES: dict[str, Family] = {"counted": _COUNTED, "money": _MONEY, "bakery": _BAKERY}
