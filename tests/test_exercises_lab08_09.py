"""Labs 08 and 09 exercises: planted wrong answers fail, each with the message that names its mistake."""
from rlhf_minimal.exercises import CORRECT, INCORRECT


def _penalised(above, below):
    def score(helpful, truthful, harmless, priority):
        first = priority[:priority.index("helpful")]
        return helpful - sum((above if axis in first else below) * (1 - value)
                             for axis, value in (("truthful", truthful), ("harmless", harmless)))
    return score


def test_lab08_q1_gold_score_mistakes():
    from rlhf_minimal.exercises.lab08 import q1

    assert q1.evaluate(_penalised(1.0, 0.5)).status == CORRECT
    res = q1.evaluate(_penalised(1.0, 1.0))  # priority ignored: every violation is fatal
    assert res.status == INCORRECT and "below" in res.message and "0.5" in res.message
    res = q1.evaluate(_penalised(0.5, 0.5))  # priority ignored: every violation costs half
    assert res.status == INCORRECT and "above" in res.message and "1.0" in res.message
    res = q1.evaluate(_penalised(0.5, 1.0))
    assert res.status == INCORRECT and "swapped" in res.message
    res = q1.evaluate(lambda h, t, x, p: h * t * x)
    assert res.status == INCORRECT and "multiplied" in res.message
    res = q1.evaluate(lambda h, t, x, p: _penalised(1.0, 0.5)(h, 1 - t, 1 - x, p))
    assert res.status == INCORRECT and "what is missing" in res.message
    res = q1.evaluate(lambda h, t, x, p: str(h))
    assert res.status == INCORRECT and "one number" in res.message


def test_lab08_q1_is_checked_against_the_judge():
    """An answer right on the worked cases but wrong on filler (helpful 0.6) is caught by the judge's verdicts."""
    from rlhf_minimal.exercises.lab08 import q1

    def forgets_filler(h, t, x, p):
        return _penalised(1.0, 0.5)(1.0 if h == 0.6 else h, t, x, p)
    res = q1.evaluate(forgets_filler)
    assert res.status == INCORRECT


def test_lab08_q2_made_up_rate_mistakes():
    from rlhf_minimal.exercises.lab08 import q2

    def all_prompts(families, outcomes):
        return sum(o == "made up" for o in outcomes) / len(outcomes)
    res = q2.evaluate(all_prompts)
    assert res.status == INCORRECT and "every prompt" in res.message

    def answered_only(families, outcomes):
        picked = [o for f, o in zip(families, outcomes) if f == "unanswerable" and o != "other"]
        return sum(o == "made up" for o in picked) / len(picked)
    res = q2.evaluate(answered_only)
    assert res.status == INCORRECT and "denominator" in res.message

    def not_declined(families, outcomes):
        picked = [o for f, o in zip(families, outcomes) if f == "unanswerable"]
        return sum(o != "declined" for o in picked) / len(picked)
    res = q2.evaluate(not_declined)
    assert res.status == INCORRECT and "not \"declined\"" in res.message

    def count(families, outcomes):
        return sum(o == "made up" for f, o in zip(families, outcomes) if f == "unanswerable")
    res = q2.evaluate(count)
    assert res.status == INCORRECT and "count" in res.message


def test_lab09_q1_translation_mistakes():
    from rlhf_minimal.exercises.lab09 import q1

    def substrings(text, word_map):
        for a, b in word_map.items():
            text = text.replace(a, b)
        return text
    res = q1.evaluate(substrings)
    assert res.status == INCORRECT and "whole words" in res.message

    def drops_unknown(text, word_map):
        return " ".join(word_map[w] for w in text.split() if w in word_map)
    res = q1.evaluate(drops_unknown)
    assert res.status == INCORRECT and "keep them" in res.message

    def backwards(text, word_map):
        back = {b: a for a, b in word_map.items()}
        return " ".join(back.get(w, w) for w in text.split())
    res = q1.evaluate(backwards)
    assert res.status == INCORRECT and "nothing was translated" in res.message

    res = q1.evaluate(lambda text, word_map: [word_map.get(w, w) for w in text.split()])
    assert res.status == INCORRECT and "one string" in res.message


def test_lab09_q2_transfer_ratio_mistakes():
    from rlhf_minimal.exercises.lab09 import q2

    res = q2.evaluate(lambda ba, bb, ta, tb: tb / ta)
    assert res.status == INCORRECT and "gains" in res.message
    res = q2.evaluate(lambda ba, bb, ta, tb: (ta - ba) / (tb - bb))
    assert res.status == INCORRECT and "upside down" in res.message
    res = q2.evaluate(lambda ba, bb, ta, tb: (tb - ba) / (ta - ba))
    assert res.status == INCORRECT and "own baseline" in res.message
    res = q2.evaluate(lambda ba, bb, ta, tb: (tb - bb) - (ta - ba))
    assert res.status == INCORRECT and "not a difference" in res.message
