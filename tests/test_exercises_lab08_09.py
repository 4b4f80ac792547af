"""Labs 08 and 09 exercises: planted wrong answers fail, each with the message that names its mistake.

The cases are registered in ``PLANTED``; tests/test_exercises.py runs them and its guard counts them."""
from collections import namedtuple


from rlhf_minimal.exercises import CORRECT, INCORRECT

Planted = namedtuple("Planted", "question mistake answer words")


def _penalised(above, below):
    def score(helpful, truthful, harmless, priority):
        first = priority[:priority.index("helpful")]
        return helpful - sum((above if axis in first else below) * (1 - value)
                             for axis, value in (("truthful", truthful), ("harmless", harmless)))
    return score


def _unanswerable(families, outcomes):
    return [o for f, o in zip(families, outcomes) if f == "unanswerable"]


def _substrings(text, word_map):
    for a, b in word_map.items():
        text = text.replace(a, b)
    return text


def _backwards(text, word_map):
    back = {b: a for a, b in word_map.items()}
    return " ".join(back.get(w, w) for w in text.split())


PLANTED = [
    # lab 08, q1: the gold score under a priority order
    Planted("lab08.q1", "priority ignored: every violation costs 1.0", _penalised(1.0, 1.0), ["below", "0.5"]),
    Planted("lab08.q1", "priority ignored: every violation costs 0.5", _penalised(0.5, 0.5), ["above", "1.0"]),
    Planted("lab08.q1", "the two penalties swapped", _penalised(0.5, 1.0), ["swapped"]),
    Planted("lab08.q1", "multiplied the axes", lambda h, t, x, p: h * t * x, ["multiplied"]),
    Planted("lab08.q1", "penalised the value, not what is missing",
            lambda h, t, x, p: _penalised(1.0, 0.5)(h, 1 - t, 1 - x, p), ["what is missing"]),
    Planted("lab08.q1", "returned a string", lambda h, t, x, p: str(h), ["one number"]),
    # lab 08, q2: the rate of made-up answers
    Planted("lab08.q2", "divided by every prompt",
            lambda f, o: sum(x == "made up" for x in o) / len(o), ["every prompt"]),
    Planted("lab08.q2", "left the \"other\" answers out of the denominator",
            lambda f, o: (lambda k: sum(x == "made up" for x in k) / len(k))([x for x in _unanswerable(f, o)
                                                                              if x != "other"]),
            ["denominator"]),
    Planted("lab08.q2", "everything not declined counts as made up",
            lambda f, o: (lambda k: sum(x != "declined" for x in k) / len(k))(_unanswerable(f, o)),
            ["not \"declined\""]),
    Planted("lab08.q2", "a count, not a share",
            lambda f, o: sum(x == "made up" for x in _unanswerable(f, o)), ["count"]),
    Planted("lab08.q2", "the share of declined answers",
            lambda f, o: (lambda k: sum(x == "declined" for x in k) / len(k))(_unanswerable(f, o)),
            ["share of declined answers"]),
    # lab 09, q1: a prompt in language B
    Planted("lab09.q1", "replaced substrings, not words", _substrings, ["whole words"]),
    Planted("lab09.q1", "dropped the words the map lacks",
            lambda text, word_map: " ".join(word_map[w] for w in text.split() if w in word_map), ["keep them"]),
    Planted("lab09.q1", "used the map backwards", _backwards, ["nothing was translated"]),
    Planted("lab09.q1", "returned a list of words",
            lambda text, word_map: [word_map.get(w, w) for w in text.split()], ["one string"]),
    # lab 09, q2: how much of the gain transfers
    Planted("lab09.q2", "divided the raw scores", lambda ba, bb, ta, tb: tb / ta, ["gains"]),
    Planted("lab09.q2", "ratio upside down", lambda ba, bb, ta, tb: (ta - ba) / (tb - bb), ["upside down"]),
    Planted("lab09.q2", "language A's baseline for B", lambda ba, bb, ta, tb: (tb - ba) / (ta - ba), ["own baseline"]),
    Planted("lab09.q2", "baselines swapped", lambda ba, bb, ta, tb: (tb - ba) / (ta - bb), ["baselines are swapped"]),
    Planted("lab09.q2", "a difference, not a ratio", lambda ba, bb, ta, tb: (tb - bb) - (ta - ba),
            ["not a difference"]),
]


def test_lab08_q1_right_penalties_pass():
    from rlhf_minimal.exercises.lab08 import q1

    assert q1.evaluate(_penalised(1.0, 0.5)).status == CORRECT


def test_lab08_q1_is_checked_against_the_judge():
    """An answer right on the worked cases but wrong on filler (helpful 0.6) is caught."""
    from rlhf_minimal.exercises.lab08 import q1

    def forgets_filler(h, t, x, p):
        return _penalised(1.0, 0.5)(1.0 if h == 0.6 else h, t, x, p)
    res = q1.evaluate(forgets_filler)
    assert res.status == INCORRECT
