"""Lab 09 exercises: translating a prompt into language B, and how much of a gain transfers."""
from __future__ import annotations

from . import Incorrect, Question

_MAP = {"what": "zok", "color": "bira", "is": "fex", "the": "ta", "a": "mu", "does": "dur", "eat": "kaxi"}


def _reference_to_language_b(text, word_map):
    return " ".join(word_map.get(word, word) for word in text.split(" "))


def _check_to_language_b(fn) -> None:
    text = "what color is the tiso ?"
    got = fn(text, dict(_MAP))
    want = _reference_to_language_b(text, _MAP)
    if isinstance(got, (list, tuple)):
        raise Incorrect("return the translated text as one string, words separated by single spaces.")
    if not isinstance(got, str):
        raise Incorrect(f"return a string, got {type(got).__name__}.")
    if got == text:
        raise Incorrect("nothing was translated. The map goes from language A to language B: "
                        "look up each A word as a key, word_map[word].")
    if got == "zok bira fex ta":
        raise Incorrect("you dropped the words the map does not have. Names and punctuation ('tiso', '?') "
                        "are the same in both languages: keep them as they are.")
    if "tiso" not in got.split():
        raise Incorrect(f"the creature's name came out as {got.split()[4:5]}: you replaced substrings, and "
                        "'tiso' contains 'is'. Translate whole words: split the text on spaces.")
    if got != want:
        raise Incorrect(f"expected {want!r}, got {got!r}.")
    from ..world import World, WorldConfig

    world = World(WorldConfig(), {}, [], dict(_MAP))
    for sentence in ("the tiso is a red one .", "hello ! what does the bimo eat ?"):
        if fn(sentence, dict(_MAP)) != world.translate_to_b(sentence):
            raise Incorrect(f"on {sentence!r} your translation differs from the world's "
                            f"{world.translate_to_b(sentence)!r}.")


q1 = Question(
    "Lab 09, question 1 (a prompt in language B)",
    _check_to_language_b,
    hints=[("Language B is a word-for-word code: split the text into words, replace each word that is a key "
           "of the map, and join the words again."),
           "`word_map.get(word, word)` gives the B word, or the word itself when the map does not have it."],
    solution="""
def to_language_b(text, word_map):
    return " ".join(word_map.get(word, word) for word in text.split(" "))
""",
    reference=_reference_to_language_b,
)


def _reference_transfer_ratio(base_a, base_b, tuned_a, tuned_b):
    return (tuned_b - base_b) / (tuned_a - base_a)


def _check_transfer_ratio(fn) -> None:
    base_a, base_b, tuned_a, tuned_b = -0.2, -0.3, 0.6, 0.3
    got = fn(base_a, base_b, tuned_a, tuned_b)
    if not isinstance(got, (int, float)) or isinstance(got, bool):
        raise Incorrect(f"return one number, got {type(got).__name__}.")

    def close(value):
        return abs(got - value) < 1e-9

    if close(tuned_b / tuned_a):
        raise Incorrect("you divided the raw scores. The base model already scores something in each language, "
                        "and gold scores can be negative, so compare the *gains* over the base model: "
                        "(tuned_b - base_b) / (tuned_a - base_a).")
    if close((tuned_a - base_a) / (tuned_b - base_b)):
        raise Incorrect("the ratio is upside down: the gain in B divided by the gain in A, so that 1 means "
                        "everything transferred and 0 nothing.")
    if close((tuned_b - base_a) / (tuned_a - base_a)):
        raise Incorrect("each language has its own baseline: the gain in B is measured from the base model's "
                        "score in B (base_b), not in A.")
    if close((tuned_b - base_a) / (tuned_a - base_b)):
        raise Incorrect("the baselines are swapped: subtract base_b from the score in B and base_a from the "
                        "score in A.")
    if close((tuned_b - base_b) - (tuned_a - base_a)) or close(tuned_b - tuned_a):
        raise Incorrect("return a ratio, not a difference: a difference depends on how much the fine-tuning "
                        "gained in the first place, a ratio says which share of it carried over.")
    if not close(0.75):
        raise Incorrect(f"with base (A -0.2, B -0.3) and fine-tuned (A 0.6, B 0.3) the gain is 0.8 in A and "
                        f"0.6 in B, a ratio of 0.75; got {got}.")
    for args, want, what in [((0.1, 0.1, 0.5, 0.1), 0.0, "nothing transferred"),
                             ((0.0, -0.1, 0.4, 0.4), 1.25, "more gained in B than in A")]:
        value = fn(*args)
        if abs(value - want) > 1e-9:
            raise Incorrect(f"{what}: base (A {args[0]}, B {args[1]}), fine-tuned (A {args[2]}, B {args[3]}) "
                            f"should give {want}, got {value}.")


q2 = Question(
    "Lab 09, question 2 (how much of the gain transfers)",
    _check_transfer_ratio,
    hints=["Fine-tuning gains something in each language over the base model it started from.",
           ("The transfer ratio is the gain in language B divided by the gain in language A, each gain "
           "measured from the base model's score in the same language.")],
    solution="""
def transfer_ratio(base_a, base_b, tuned_a, tuned_b):
    return (tuned_b - base_b) / (tuned_a - base_a)
""",
    reference=_reference_transfer_ratio,
)
