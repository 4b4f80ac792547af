"""Lab 02 exercises: the SFT targets (loss on response tokens only), and the open-QA checker."""
from __future__ import annotations

from . import Incorrect, Question


def _reference_sft_targets(prompt_ids: list, completion_ids: list) -> tuple[list, list]:
    sequence = prompt_ids + completion_ids
    inputs = sequence[:-1]
    targets = [-100] * (len(prompt_ids) - 1) + completion_ids
    return inputs, targets


def _check_sft_targets(fn) -> None:
    prompt, completion = [11, 12, 13, 14], [21, 22, 1]
    got = fn(list(prompt), list(completion))
    if not (isinstance(got, tuple) and len(got) == 2):
        raise Incorrect("return a pair (inputs, targets).")
    inputs, targets = (list(x) for x in got)
    want_inputs, want_targets = _reference_sft_targets(prompt, completion)
    if inputs != want_inputs:
        raise Incorrect(f"inputs should be prompt + completion without its last token, "
                        f"{want_inputs}; got {inputs}.")
    if len(targets) != len(inputs):
        raise Incorrect(f"targets need one entry per input position ({len(inputs)}), got {len(targets)}.")
    if targets == (prompt + completion)[1:]:
        raise Incorrect("nothing is masked: the loss would also train the model to write prompts. "
                        "Put -100 where the target is a prompt token.")
    if targets[:len(prompt)] == [-100] * len(prompt):
        raise Incorrect("off by one: the last prompt position predicts the first response token, "
                        "so only the first len(prompt) - 1 targets are -100.")
    if targets != want_targets:
        raise Incorrect(f"expected targets {want_targets}, got {targets}.")
    if tuple(map(list, fn([5], [6, 1]))) != ([5, 6], [6, 1]):
        raise Incorrect("with a one-token prompt nothing is masked: targets are the completion.")


q1 = Question(
    "Lab 02, question 1 (SFT targets)",
    _check_sft_targets,
    hints=["Targets are the inputs shifted by one: position t predicts token t+1.",
           "The positions whose target is a prompt token are the first len(prompt) - 1."],
    solution="""
def sft_targets(prompt_ids, completion_ids):
    sequence = prompt_ids + completion_ids
    inputs = sequence[:-1]
    targets = [-100] * (len(prompt_ids) - 1) + completion_ids
    return inputs, targets
""",
    reference=_reference_sft_targets,
)


def _reference_open_qa_correct(facts: dict, name: str, attribute: str, response: str) -> bool:
    from ..judge import parse_claims

    claims = parse_claims(response, set(facts) | {name})
    if not claims or any(facts.get(n, {}).get(a) != v for n, a, v in claims):
        return False
    return any(n == name and a == attribute for n, a, v in claims)


def _check_open_qa(fn) -> None:
    facts = {"bimo": {"color": "red", "home": "cave", "food": "fish", "size": "tiny"},
             "kalu": {"color": "blue", "home": "lake", "food": "honey", "size": "huge"}}
    cases = [
        ("bimo", "food", "the bimo eats fish .", True, "a true answer"),
        ("bimo", "food", "the bimo eats honey .", False, "a wrong fact"),
        ("bimo", "food", "the bimo eats fish . it is blue .", False, "an extra false fact"),
        ("bimo", "food", "the bimo eats fish . it is red .", True, "an extra true fact"),
        ("bimo", "food", "i do not know .", False, "declining to answer"),
        ("bimo", "food", "the kalu eats honey .", False, "a true fact about the wrong creature"),
        ("kalu", "home", "the kalu lives in the lake .", True, "a true answer"),
        ("bimo", "food", "what does the bimo eat ?", False, "a question instead of an answer"),
    ]
    for name, attribute, response, want, what in cases:
        got = fn(facts, name, attribute, response)
        if bool(got) != want:
            raise Incorrect(f"{what}: open_qa_correct(facts, {name!r}, {attribute!r}, {response!r}) "
                            f"should be {want}.")


q2 = Question(
    "Lab 02, question 2 (the open-QA checker)",
    _check_open_qa,
    hints=["`parse_claims(response, names)` gives (creature, attribute, value) triples.",
           "Correct means: every claim is true, and one of them answers the question asked."],
    solution="""
from rlhf_minimal.judge import parse_claims

def open_qa_correct(facts, name, attribute, response):
    claims = parse_claims(response, set(facts))
    if not claims or any(facts[n][a] != v for n, a, v in claims):
        return False
    return any(n == name and a == attribute for n, a, v in claims)
""",
    reference=_reference_open_qa_correct,
)
