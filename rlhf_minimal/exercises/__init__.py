"""The exercise kit: ``check()``, ``hint()`` and ``solution()`` per question.

Each lab has a module here (``lab00``, ``lab01``, ...) with its questions ``q1``, ``q2``, ...
A student writes an answer (usually a function) in the notebook and calls ``q1.check(answer)``.
``check`` prints one of three verdicts and never raises into the notebook:

* **Correct**,
* **Incorrect**, with the reason (a wrong value, a wrong shape, or the exception the answer raised),
* **Not attempted**, while the answer is still the stub (``None``, ``...``, or a function that
  raises ``NotImplementedError``), so an untouched notebook still runs top to bottom.

A question's checker is a function that raises :class:`Incorrect` with a helpful message, or
returns normally when the answer is right. ``evaluate`` gives the verdict as a :class:`Result`
without printing (the tests use it).

Some answers are *pieces* of a training run (``piece``: the package's function they replace). The
lab trains with ``q.use(answer)``: the student's function once attempted, right or wrong (a wrong
piece shows up in the run as well as in ``check``), and the package's own while the answer is
still the stub, so an untouched notebook trains the package's run, through the same code path.

``solution()`` shows the reference code and says where the worked solutions, with their
explanations, are: in the instructor edition of the book (``make book``); the student edition
(``make book-student``) leaves them out. A course that wants the notebooks to keep the code
solutions back as well sets the environment variable ``RLHF_STUDENT_EDITION=1`` (any value but
empty, ``0``, ``false`` or ``no``): ``solution()`` then shows only that pointer, never the code.
"""
from __future__ import annotations

import os
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Sequence

CORRECT, INCORRECT, NOT_ATTEMPTED = "correct", "incorrect", "not attempted"
_COLOURS = {CORRECT: "#1b7837", INCORRECT: "#b2182b", NOT_ATTEMPTED: "#5f5f5f"}
_TITLES = {CORRECT: "Correct", INCORRECT: "Incorrect", NOT_ATTEMPTED: "Not attempted"}


class Incorrect(Exception):
    """Raised by a checker: the answer is wrong, and the message says why."""


class NotAttempted(Exception):
    """Raised by a checker or a stub: there is no answer yet."""


@dataclass
class Result:
    status: str
    message: str

    @property
    def correct(self) -> bool:
        return self.status == CORRECT

    def text(self) -> str:
        return f"{_TITLES[self.status]}: {self.message}" if self.message else _TITLES[self.status]

    def html(self) -> str:
        import html

        colour = _COLOURS[self.status]
        body = html.escape(self.message).replace("\n", "<br>")
        return (f'<div style="color:{colour}"><b>{_TITLES[self.status]}</b>'
                + (f": {body}" if body else "") + "</div>")


def _show(text: str, html: str | None = None) -> None:
    try:
        from IPython import get_ipython
        from IPython.display import HTML, Markdown, display

        if get_ipython() is not None:
            display(HTML(html) if html is not None else Markdown(text))
            return
    except ImportError:
        pass
    print(text)


INSTRUCTOR_EDITION = ("Worked solutions with explanations are in the instructor edition of the book "
                      "(make book); the student edition (make book-student) leaves them out.")


def student_edition() -> bool:
    """Whether ``RLHF_STUDENT_EDITION`` asks ``solution()`` to keep the code back."""
    value = os.environ.get("RLHF_STUDENT_EDITION", "").strip().lower()
    return value not in ("", "0", "false", "no")


def _is_stub(answer: Any) -> bool:
    return answer is None or answer is Ellipsis


NO_PIECE = object()  # a question whose answer is not a piece of any training run


class Question:
    """One exercise.

    ``checker(answer)`` raises :class:`Incorrect` (or :class:`NotAttempted`) or returns.
    ``solution`` is the reference answer as source code, shown by :meth:`solution`.
    ``reference`` is the reference answer as an object, so tests can check that it passes.
    ``piece`` is the package's own function that the answer replaces in a training run
    (``None`` where the package's default is None), named by ``piece_name``; see :meth:`use`.
    """

    def __init__(self, name: str, checker: Callable[[Any], Any], hints: Sequence[str],
                 solution: str, reference: Any = None, correct_message: str = "",
                 piece: Any = NO_PIECE, piece_name: str = ""):
        self.name = name
        self._checker = checker
        self._hints = list(hints)
        self._hint_index = 0
        self._solution = solution.strip("\n")
        self.reference = reference
        self._correct_message = correct_message
        self.piece, self.piece_name = piece, piece_name

    def use(self, answer: Any = None) -> Any:
        """The function a training run takes for this piece, saying which: ``answer`` once it is
        attempted (correct or not: a wrong piece should show in the run), the package's own
        (``piece``) while it is not attempted."""
        if self.piece is NO_PIECE:
            raise ValueError(f"{self.name} is not a piece of a training run; use check() on it")
        result = self.evaluate(answer)
        if result.status == NOT_ATTEMPTED:
            _show(f"{self.name}: not attempted, so the run uses the package's {self.piece_name}.")
            return self.piece
        _show(f"{self.name}: the run uses your answer ({_TITLES[result.status].lower()} by its check).")
        return answer

    def evaluate(self, answer: Any = None) -> Result:
        """The verdict on ``answer``, without printing anything. Never raises."""
        if _is_stub(answer):
            return Result(NOT_ATTEMPTED, "replace the placeholder with your answer, then check again.")
        try:
            self._checker(answer)
        except NotImplementedError:
            return Result(NOT_ATTEMPTED, "your function still raises NotImplementedError: "
                                         "write its body, then check again.")
        except NotAttempted as err:
            return Result(NOT_ATTEMPTED, str(err))
        except Incorrect as err:
            return Result(INCORRECT, str(err))
        except Exception as err:  # the student's code raised: report it, never re-raise
            frame = traceback.extract_tb(err.__traceback__)[-1]
            return Result(INCORRECT, f"your answer raised {type(err).__name__}: {err} "
                                     f"(line {frame.lineno}: {frame.line})")
        return Result(CORRECT, self._correct_message)

    def check(self, answer: Any = None) -> None:
        """Print whether ``answer`` is correct, incorrect (and why) or not attempted."""
        result = self.evaluate(answer)
        _show(f"{self.name}: {result.text()}", result.html())

    def hint(self) -> None:
        """Show the next hint (they get more specific each time)."""
        if not self._hints:
            _show(f"{self.name}: no hint for this one.")
            return
        text = self._hints[min(self._hint_index, len(self._hints) - 1)]
        self._hint_index += 1
        _show(f"**Hint ({self.name})**: {text}")

    def solution(self) -> None:
        """Show the reference solution, and where the worked solutions are.

        With ``RLHF_STUDENT_EDITION`` set (to anything but empty, ``0``, ``false`` or ``no``) it
        shows only where the worked solutions are, not the code.
        """
        if student_edition():
            _show(f"**Solution ({self.name})**: not shown in the student edition. {INSTRUCTOR_EDITION}")
            return
        _show(f"**Solution ({self.name})**:\n\n```python\n{self._solution}\n```\n\n{INSTRUCTOR_EDITION}")


def expect_close(got, want, what: str, atol: float = 1e-5) -> None:
    """Raise :class:`Incorrect` unless tensors or numbers ``got`` and ``want`` agree."""
    import torch

    got_t = torch.as_tensor(got, dtype=torch.float64) if not isinstance(got, torch.Tensor) else got.double()
    want_t = torch.as_tensor(want, dtype=torch.float64) if not isinstance(want, torch.Tensor) else want.double()
    if got_t.shape != want_t.shape:
        raise Incorrect(f"{what} has shape {tuple(got_t.shape)}, expected {tuple(want_t.shape)}.")
    if not torch.allclose(got_t, want_t, atol=atol, rtol=1e-4):
        diff = (got_t - want_t).abs().max().item()
        raise Incorrect(f"{what} is off by up to {diff:.4g}: got {got_t.flatten()[:6].tolist()}, "
                        f"expected {want_t.flatten()[:6].tolist()}.")


def diagnose_group_advantages(got: torch.Tensor, rewards: torch.Tensor) -> None:
    """The usual wrong GRPO advantages, named: ``got`` and ``rewards`` as [prompts, G], one row per
    prompt's group (labs 7 and 12 ask for the same formula in TRL's layout and in ours)."""
    import torch

    if not torch.isfinite(got).all():
        raise Incorrect("some advantages are not finite: when every answer to a prompt gets the same reward "
                        "its standard deviation is 0, which is what eps (1e-4) in the denominator is for.")
    centred = rewards - rewards.mean(dim=1, keepdim=True)
    if torch.allclose(got, (rewards - rewards.mean()) / (rewards.std() + 1e-4), atol=1e-4):
        raise Incorrect("you normalised over the whole batch: GRPO compares each answer with the other "
                        "answers to the same prompt (one group), so the mean and std are per group.")
    if torch.allclose(got, centred, atol=1e-4):
        raise Incorrect("you subtracted each prompt's mean but did not divide by its standard deviation.")
    if torch.allclose(got, centred / (rewards.std(dim=1, unbiased=False, keepdim=True) + 1e-4), atol=1e-4):
        raise Incorrect("you used the population standard deviation (dividing by G); use the sample std, "
                        "dividing by G - 1 (torch.std's default, as TRL and the other GRPO implementations do).")
