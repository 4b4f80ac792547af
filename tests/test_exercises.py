"""The exercise kit, and every lab's exercises: the reference passes, planted wrong answers fail
with a message that names the mistake, the untouched notebook stub is 'not attempted', and nothing
ever raises into the notebook.

Each question needs at least two planted wrong answers, registered in a ``PLANTED`` list: labs 00
to 06 below, labs 08 and 09 in test_exercises_lab08_09.py, labs 10 and 11 in
test_exercises_lab10_11.py. ``test_every_question_has_regression_cases`` fails for a question
without them, so a new exercise cannot arrive untested."""
import importlib
import importlib.util
import json
import pkgutil
import re
from collections import namedtuple
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import rlhf_minimal.exercises as kit
from rlhf_minimal.exercises import CORRECT, INCORRECT, NOT_ATTEMPTED, Question, Incorrect
from rlhf_minimal.exercises.lab03 import _reference_agreement

ROOT = Path(__file__).resolve().parents[1]

# question: "labNN.qK"; mistake: what the student got wrong; answer: the wrong answer;
# words: parts of the message that must appear (the part that names the mistake).
Planted = namedtuple("Planted", "question mistake answer words")


def _question_ids():
    """Every question of every lab module, as {"labNN.qK": Question}."""
    found = {}
    for info in pkgutil.iter_modules(kit.__path__):
        module = importlib.import_module(f"rlhf_minimal.exercises.{info.name}")
        for name in sorted(vars(module)):
            if isinstance(getattr(module, name), Question):
                found[f"{info.name}.{name}"] = getattr(module, name)
    return found


def _all_questions():
    return [pytest.param(q, id=qid) for qid, q in _question_ids().items()]


def _question(qid):
    lab, name = qid.split(".")
    return getattr(importlib.import_module(f"rlhf_minimal.exercises.{lab}"), name)


def _stub(*args, **kwargs):
    raise NotImplementedError


@pytest.mark.parametrize("question", _all_questions())
def test_reference_passes_and_stubs_are_not_attempted(question):
    assert question.reference is not None, "every question needs a reference answer"
    assert question.evaluate(question.reference).status == CORRECT
    assert question.evaluate(None).status == NOT_ATTEMPTED
    assert question.evaluate(...).status == NOT_ATTEMPTED
    assert question.evaluate(_stub).status == NOT_ATTEMPTED


@pytest.mark.parametrize("question", _all_questions())
def test_a_crashing_answer_is_incorrect_not_an_exception(question):
    def crashes(*args, **kwargs):
        return 1 / 0
    result = question.evaluate(crashes)
    assert result.status == INCORRECT and "ZeroDivisionError" in result.message


def test_check_hint_solution_print_and_never_raise(capsys, monkeypatch):
    monkeypatch.delenv("RLHF_STUDENT_EDITION", raising=False)
    q = Question("demo", lambda a: (_ for _ in ()).throw(Incorrect("too small")) if a < 3 else None,
                 hints=["first", "second"], solution="answer = 3", reference=3)
    q.check(1)
    q.check(3)
    q.check(None)
    q.hint(); q.hint(); q.hint()
    q.solution()
    out = capsys.readouterr().out
    assert "Incorrect: too small" in out and "Correct" in out and "Not attempted" in out
    assert out.count("first") == 1 and out.count("second") == 2
    assert "answer = 3" in out


def test_solution_says_where_the_instructor_edition_is(capsys, monkeypatch):
    from rlhf_minimal.exercises.lab00 import q1

    monkeypatch.delenv("RLHF_STUDENT_EDITION", raising=False)
    q1.solution()
    out = capsys.readouterr().out
    assert "(values * mask).sum() / mask.sum()" in out
    assert "instructor edition of the book (make book)" in out and "make book-student" in out


@pytest.mark.parametrize("value", ["1", "yes", "true"])
def test_student_edition_keeps_the_code_solution_back(capsys, monkeypatch, value):
    from rlhf_minimal.exercises.lab00 import q1

    monkeypatch.setenv("RLHF_STUDENT_EDITION", value)
    q1.solution()
    out = capsys.readouterr().out
    assert "mask.sum()" not in out and "def masked_mean" not in out
    assert "instructor edition of the book (make book)" in out


@pytest.mark.parametrize("value", ["", "0", "false", "no"])
def test_student_edition_off_shows_the_code(capsys, monkeypatch, value):
    from rlhf_minimal.exercises.lab00 import q1

    monkeypatch.setenv("RLHF_STUDENT_EDITION", value)
    q1.solution()
    assert "def masked_mean" in capsys.readouterr().out


# ----------------------------------------------------------------------------- the notebooks' stubs

_IMPORT = re.compile(r"from rlhf_minimal\.exercises\.(lab\d+) import (q\d+)")


_TOP_IMPORT = re.compile(r"^(import \S.*|from \S+ import \S.*)$", re.M)


def _stub_cells():
    """The exercise cells of the labs exactly as shipped: {"labNN.qK": (notebook, earlier imports, source)}.
    A cell may use names an earlier cell imported (torch, F), so the imports of the cells before it
    come along."""
    cells = {}
    for path in sorted((ROOT / "labs").glob("*.ipynb")):
        imports = []
        for cell in json.loads(path.read_text())["cells"]:
            source = "".join(cell["source"])
            if cell["cell_type"] != "code":
                continue
            if "raise NotImplementedError" in source:
                for lab, name in _IMPORT.findall(source):
                    if f"{name}.check(" in source:
                        cells[f"{lab}.{name}"] = (path.name, list(imports), source)
            imports += _TOP_IMPORT.findall(source)
    return cells


@pytest.mark.parametrize("qid", sorted(_stub_cells()))
def test_the_untouched_notebook_cell_is_not_attempted(qid, capsys):
    notebook, imports, source = _stub_cells()[qid]
    namespace = {}
    for line in imports:
        if line.startswith(("import torch", "from torch", "import math", "from rlhf_minimal.exercises")):
            exec(line, namespace)
    exec(compile(source, f"{notebook} ({qid})", "exec"), namespace)
    out = capsys.readouterr().out
    assert "Not attempted" in out and "NotImplementedError" in out, out
    assert "Incorrect" not in out and "Correct" not in out.replace("Not attempted", ""), out


# ----------------------------------------------------------------------------- planted wrong answers, labs 00-06

def _masked_mean_as_float(v, m):
    return ((v * m).sum() / m.sum()).item()


def _per_row_masked_mean(v, m):
    m = m.to(v.dtype)
    return (v * m).sum(-1) / m.sum(-1)


def _words_zero_no_guard(label, response):
    return response.split()[0] == label


def _claims(facts, response):
    from rlhf_minimal.judge import parse_claims
    return parse_claims(response, set(facts))


def _gae(no_values=False, leaky=False, returns_plus_values=True):
    from rlhf_minimal.ppo import gae

    def answer(r, v, m, g, l):
        adv, ret = gae(r, v * 0 if no_values else v, torch.ones_like(m) if leaky else m, g, l)
        return adv, (ret if returns_plus_values else adv * m)
    return answer


def _policy_loss(lp, old, a, m, eps, reduce="max", sign=1.0):
    ratio = (lp - old).exp()
    pick = torch.maximum if reduce == "max" else torch.minimum
    per_token = sign * pick(-a * ratio, -a * ratio.clamp(1 - eps, 1 + eps))
    return (per_token * m).sum() / m.sum()


def _kl_rewards(s, lp, ref, m, beta, at_last_column=False, mask_kl=True, kl_mask=True):
    r = -beta * (lp - ref) * (m if mask_kl else 1)
    last = torch.full((len(s),), m.size(1) - 1) if at_last_column else m.sum(-1).long() - 1
    r[torch.arange(len(s)), last] += s
    return r, (lp - ref) * (m if kl_mask else 1)


def _minibatch_step(sign=1.0, step=True, zero_grad=True):
    """Lab 5's minibatch step, with one thing wrong."""
    from rlhf_minimal.ppo import entropy_from_logits, masked_mean, step_stats, value_loss
    from rlhf_minimal.sampling import token_logprobs

    def answer(policy, optimizer, mb, cfg, pieces, precision):
        P, mask = mb.prompt_width, mb.mask.float()
        logits, values = policy(mb.ids, mb.attn)
        logits, values = logits[:, P - 1:-1].float(), values[:, P - 1:-1].float()
        logprobs = token_logprobs(logits, mb.response, cfg.temperature)
        pg_loss = sign * pieces.policy_loss(logprobs, mb.logprobs, mb.advantages, mask, cfg.clip_eps)
        vf_loss = value_loss(values, mb.values, mb.returns, mask, cfg.value_clip)
        entropy = masked_mean(entropy_from_logits(logits, cfg.temperature), mask)
        loss = pg_loss + cfg.vf_coef * vf_loss - cfg.entropy_coef * entropy
        if zero_grad:
            optimizer.zero_grad()
        loss.backward()
        precision.clip_grad_norm(policy, optimizer, cfg.max_grad_norm)
        if step:
            optimizer.step()
        return step_stats(loss, pg_loss, vf_loss, entropy, logprobs, mb, cfg)
    return answer


def _win_rate(tie_weight=0.5, drop_ties=False, swapped=False):
    def answer(a, b):
        if swapped:
            a, b = b, a
        wins = sum(x > y for x, y in zip(a, b))
        ties = sum(x == y for x, y in zip(a, b))
        return (wins + tie_weight * ties) / ((len(a) - ties) or 1 if drop_ties else len(a))
    return answer


PLANTED = [
    # lab 00: the masked mean
    Planted("lab00.q1", "mean over every position, padding included", lambda v, m: v.mean(), ["padding"]),
    Planted("lab00.q1", "zeroed the padding but divided by all positions", lambda v, m: (v * m).mean(),
            ["divided by the number of", "all positions"]),
    Planted("lab00.q1", "returned a Python float (.item())", _masked_mean_as_float, ["return a tensor", "float"]),
    Planted("lab00.q1", "a mean per row (wrong axis)", _per_row_masked_mean, ["one number", "(2,)"]),
    # lab 01: the next-token loss, and the gold checker
    Planted("lab01.q1", "no shift: each position scored on its own token",
            lambda logits, tokens: F.cross_entropy(logits, tokens), ["t+1", "logits[:-1]"]),
    Planted("lab01.q1", "sum instead of mean",
            lambda l, t: F.cross_entropy(l[:-1], t[1:], reduction="sum"), ["sum over positions", "mean"]),
    Planted("lab01.q1", "per-position losses, never reduced",
            lambda l, t: F.cross_entropy(l[:-1], t[1:], reduction="none"), ["0-dim tensor"]),
    Planted("lab01.q2", "the label anywhere in the response counts",
            lambda label, response: label in response.split(), ["a label mentioned later does not count"]),
    Planted("lab01.q2", "always True", lambda label, response: True, ["first word of the response is the answer"]),
    Planted("lab01.q2", "no guard for an empty response", _words_zero_no_guard,
            ["IndexError", "empty response has no first word"]),
    Planted("lab01.q2", "returns the first word instead of a verdict",
            lambda label, response: (response.split() or [""])[0], ["True or False", "not str"]),
    # lab 02: SFT targets, and the open-QA checker
    Planted("lab02.q1", "prompt tokens not masked", lambda p, c: ((p + c)[:-1], (p + c)[1:]), ["nothing is masked"]),
    Planted("lab02.q1", "masked one prompt position too many",
            lambda p, c: ((p + c)[:-1], [-100] * len(p) + c[1:]), ["off by one", "len(prompt) - 1"]),
    Planted("lab02.q1", "inputs keep the last token", lambda p, c: (p + c, [-100] * len(p) + c),
            ["without its last token"]),
    Planted("lab02.q2", "only checks the claim that answers the question",
            lambda facts, n, a, r: any(c == (n, a, facts[n][a]) for c in _claims(facts, r)),
            ["an extra false fact"]),
    Planted("lab02.q2", "every claim true, but never checks that one answers the question",
            lambda facts, n, a, r: bool(_claims(facts, r)) and all(facts[x][y] == v for x, y, v in _claims(facts, r)),
            ["a true fact about the wrong creature"]),
    Planted("lab02.q2", "no false claim counts as correct, even with no claim at all",
            lambda facts, n, a, r: all(facts[x][y] == v for x, y, v in _claims(facts, r)),
            ["declining to answer"]),
    # lab 03: ranking to pairs, and labeler agreement
    Planted("lab03.q1", "only neighbouring pairs", lambda r: [(r[i], r[i + 1]) for i in range(len(r) - 1)],
            ["only neighbours"]),
    Planted("lab03.q1", "pairs the wrong way round",
            lambda r: [(r[j], r[i]) for i in range(len(r)) for j in range(i + 1, len(r))], ["wrong way round"]),
    Planted("lab03.q1", "every ordered pair, both ways",
            lambda r: [(x, y) for x in r for y in r if x != y], ["K(K-1)/2"]),
    Planted("lab03.q2", "compares positions one by one",
            lambda a, b: sum(x == y for x, y in zip(a, b)) / len(a), ["compared positions one by one", "pairs"]),
    Planted("lab03.q2", "the disagreement rate",
            lambda a, b: 1 - _reference_agreement(a, b), ["disagree"]),
    Planted("lab03.q2", "a count, not divided by the number of pairs",
            lambda a, b: round(_reference_agreement(a, b) * len(a) * (len(a) - 1) / 2),
            ["number of pairs they agree on", "K(K-1)/2"]),
    # lab 04: the pairwise loss, and weighting each prompt equally
    Planted("lab04.q1", "log(sigmoid(x)) underflows",
            lambda c, r: -torch.log(torch.sigmoid(c - r)).mean(), ["infinite", "F.logsigmoid"]),
    Planted("lab04.q1", "sign flipped", lambda c, r: -F.logsigmoid(r - c).mean(), ["sign is flipped"]),
    Planted("lab04.q1", "no weights argument", lambda c, r: -F.logsigmoid(c - r).mean(), ["weights"]),
    Planted("lab04.q1", "weighted sum, not divided by the weights",
            lambda c, r, weights=None: (-F.logsigmoid(c - r) * (1 if weights is None else weights)).sum()
            / (len(c) if weights is None else 1), ["divide by sum(w)"]),
    Planted("lab04.q3", "the last column", lambda v, m: v[:, -1], ["last column"]),
    Planted("lab04.q3", "mask.sum() - 1 (right padding only)",
            lambda v, m: v.gather(1, (m.sum(-1) - 1)[:, None]).squeeze(1), ["left padding"]),
    Planted("lab04.q3", "the first token", lambda v, m: v[:, 0], ["first token"]),
    Planted("lab04.q2", "all pairs pooled",
            lambda pp: -F.logsigmoid(torch.cat([c for c, _ in pp]) - torch.cat([r for _, r in pp])).mean(),
            ["averaged over all pairs together", "within each prompt"]),
    Planted("lab04.q2", "sum over prompts instead of mean",
            lambda pp: torch.stack([-F.logsigmoid(c - r).mean() for c, r in pp]).sum(),
            ["summed the prompts' losses"]),
    Planted("lab04.q2", "sum over each prompt's pairs instead of mean",
            lambda pp: torch.stack([-F.logsigmoid(c - r).sum() for c, r in pp]).mean(),
            ["within each prompt you summed"]),
    # lab 05: GAE, the clipped loss, the per-token KL reward
    Planted("lab05.q1", "advantages without the values", _gae(no_values=True), ["ignore the values"]),
    Planted("lab05.q1", "values after the end leak in (mask forgotten)", _gae(leaky=True),
            ["after the end", "Use the mask"]),
    Planted("lab05.q1", "returns without the values added back", _gae(returns_plus_values=False),
            ["the returns (advantages + values)"]),
    Planted("lab05.q2", "padding counted in the mean",
            lambda lp, old, a, m, eps: _policy_loss(lp, old, a, torch.ones_like(m), eps),
            ["padding", "masked tokens only"]),
    Planted("lab05.q2", "minimum of the losses instead of maximum",
            lambda lp, old, a, m, eps: _policy_loss(lp, old, a, m, eps, reduce="min"), ["minimum", "maximum"]),
    Planted("lab05.q2", "sign flipped (the objective, not the loss)",
            lambda lp, old, a, m, eps: _policy_loss(lp, old, a, m, eps, sign=-1.0), ["sign is flipped"]),
    Planted("lab05.q3", "KL term with the wrong sign",
            lambda s, lp, ref, m, beta: _kl_rewards(s, lp, ref, m, -beta), ["wrong sign"]),
    Planted("lab05.q3", "score on the last column",
            lambda s, lp, ref, m, beta: _kl_rewards(s, lp, ref, m, beta, at_last_column=True), ["last real token"]),
    Planted("lab05.q3", "KL term not masked",
            lambda s, lp, ref, m, beta: _kl_rewards(s, lp, ref, m, beta, mask_kl=False),
            ["padding positions carry a reward"]),
    Planted("lab05.q3", "the rewards alone, without the KL",
            lambda s, lp, ref, m, beta: _kl_rewards(s, lp, ref, m, beta)[0], ["tuple (rewards, kl)"]),
    Planted("lab05.q3", "the KL not masked", lambda s, lp, ref, m, beta: _kl_rewards(s, lp, ref, m, beta, kl_mask=False),
            ["the per-token KL"]),
    Planted("lab05.q4", "policy loss with the sign flipped", _minibatch_step(sign=-1.0), ["wrong sign"]),
    Planted("lab05.q4", "no optimiser step", _minibatch_step(step=False), ["did not move"]),
    Planted("lab05.q4", "gradients never zeroed", _minibatch_step(zero_grad=False), ["differ from ppo_update's"]),
    Planted("lab05.q4", "returns the loss alone",
            lambda policy, optimizer, mb, cfg, pieces, precision: _minibatch_step()(
                policy, optimizer, mb, cfg, pieces, precision)["loss"], ["return step_stats"]),
    # lab 06: the win rate, and the KV cache's work
    Planted("lab06.q1", "ties count as losses", _win_rate(tie_weight=0.0), ["ties count as losses"]),
    Planted("lab06.q1", "ties count as wins", _win_rate(tie_weight=1.0), ["ties count as full wins"]),
    Planted("lab06.q1", "ties dropped from the denominator", _win_rate(tie_weight=0.0, drop_ties=True),
            ["denominator"]),
    Planted("lab06.q1", "A and B swapped", _win_rate(swapped=True), ["swapped"]),
    Planted("lab06.q2", "the cache feeds the last token back too", lambda p, n: (p + n, sum(p + t for t in range(n))),
            ["never fed back"]),
    Planted("lab06.q2", "without the cache, the full length every step", lambda p, n: (p + n - 1, n * (p + n)),
            ["recomputes the prompt plus the t tokens"]),
]


def _registered_cases():
    """Every PLANTED list of tests/test_exercises*.py, this file's included."""
    cases = list(PLANTED)
    for path in sorted(Path(__file__).parent.glob("test_exercises_*.py")):
        spec = importlib.util.spec_from_file_location(f"_planted_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        cases += list(getattr(module, "PLANTED", []))
    return cases


@pytest.mark.parametrize("case", [pytest.param(c, id=f"{c.question}-{c.mistake}") for c in _registered_cases()])
def test_planted_wrong_answer_fails_with_a_reason(case):
    """Every planted wrong answer, this file's and those of tests/test_exercises_*.py."""
    result = _question(case.question).evaluate(case.answer)
    assert result.status == INCORRECT, f"{case.mistake}: {result}"
    for word in case.words:
        assert word in result.message, f"{case.mistake}: {word!r} not in {result.message!r}"


def test_lab05_package_functions_pass():
    from rlhf_minimal.exercises.lab05 import q1, q2, q3
    from rlhf_minimal.ppo import gae, per_token_rewards, policy_loss

    assert q1.evaluate(gae).status == CORRECT and q2.evaluate(policy_loss).status == CORRECT
    assert q3.evaluate(per_token_rewards).status == CORRECT


# ----------------------------------------------------------------------------- the guard

def test_every_question_has_regression_cases():
    """Each question: a reference, at least two planted wrong answers that assert on their message,
    and a stub cell in a lab notebook (the tests above check all three)."""
    questions = _question_ids()
    by_question = {}
    for case in _registered_cases():
        assert case.question in questions, f"a planted case names an unknown question {case.question}"
        assert case.words and all(case.words), f"{case.question} ({case.mistake}) asserts on no message"
        by_question.setdefault(case.question, []).append(case)
    too_few = {qid: len(by_question.get(qid, [])) for qid in questions if len(by_question.get(qid, [])) < 2}
    assert not too_few, f"questions with fewer than two planted wrong answers: {too_few}"
    without_reference = [qid for qid, q in questions.items() if q.reference is None]
    assert not without_reference, f"questions without a reference answer: {without_reference}"
    without_stub = sorted(set(questions) - set(_stub_cells()))
    assert not without_stub, f"questions with no stub cell in labs/*.ipynb: {without_stub}"
