""""Be the labeler": rank K responses yourself, in the same comparison format as the simulated
labelers. Core ipywidgets only (HTML, Dropdown, Button, boxes), so it runs with ipywidgets 7.7
(Colab) and 8 (local Jupyter).

In a non-interactive run (``RLHF_NONINTERACTIVE=1``, set by ``make test`` and ``make book``) or
when ``answers`` are given, the panel is filled with those rankings instead of waiting for
clicks, so a notebook that uses it still runs top to bottom.
"""
from __future__ import annotations

import html
import json
import os

from .preference import ranking_to_pairs
from .world import Task

STUDENT_ID = -1


def ranks_to_groups(ranks: list[int]) -> list[list[int]]:
    """Ranks per response (1 = best; equal ranks are ties) to groups, best first."""
    groups: dict[int, list[int]] = {}
    for index, rank in enumerate(ranks):
        groups.setdefault(rank, []).append(index)
    return [groups[r] for r in sorted(groups)]


def non_interactive() -> bool:
    return os.environ.get("RLHF_NONINTERACTIVE", "") not in ("", "0")


class RankingPanel:
    """Shows one prompt and its K responses at a time; the student picks a rank for each."""

    def __init__(self, tasks: list[Task], responses: list[list[str]], answers: list | None = None):
        if len(tasks) != len(responses):
            raise ValueError(f"{len(tasks)} tasks but {len(responses)} response lists")
        self.tasks, self.responses = tasks, responses
        self.rankings: dict[int, list[list[int]]] = {}
        self.index = 0
        if answers is not None and non_interactive():
            for i, ranks in enumerate(answers[:len(tasks)]):
                self.rankings[i] = ranks_to_groups(ranks)
            self.index = len(self.rankings)

    # -- the widget -----------------------------------------------------------------------------
    def widget(self):
        import ipywidgets as w

        self._header = w.HTML()
        self._rows = w.VBox()
        self._status = w.HTML()
        save = w.Button(description="Save ranking, next prompt", button_style="primary",
                        layout=w.Layout(width="260px"))
        skip = w.Button(description="Skip", layout=w.Layout(width="100px"))
        save.on_click(lambda _: self._save())
        skip.on_click(lambda _: self._advance())
        self._render()
        return w.VBox([self._header, self._rows, w.HBox([save, skip]), self._status])

    def display(self):
        from IPython.display import display

        if non_interactive():
            display(self.table())
        else:
            display(self.widget())

    def _render(self):
        import ipywidgets as w

        done = f"{len(self.rankings)} of {len(self.tasks)} prompts ranked"
        if self.index >= len(self.tasks):
            self._header.value = f"<b>All done.</b> {done}."
            self._rows.children = []
            return
        task = self.tasks[self.index]
        k = len(self.responses[self.index])
        self._header.value = (f"<p>{done}. Rank the responses to this prompt: 1 = best, equal "
                              f"numbers for a tie.</p><pre>{html.escape(task.prompt)}</pre>")
        self._dropdowns = [w.Dropdown(options=list(range(1, k + 1)), value=i + 1,
                                      layout=w.Layout(width="70px")) for i in range(k)]
        self._rows.children = [w.HBox([d, w.HTML(f"<code>{html.escape(r)}</code>")])
                               for d, r in zip(self._dropdowns, self.responses[self.index])]

    def _save(self):
        self.rankings[self.index] = ranks_to_groups([d.value for d in self._dropdowns])
        self._status.value = f"saved prompt {self.index + 1}"
        self._advance()

    def _advance(self):
        self.index += 1
        self._render()

    # -- results --------------------------------------------------------------------------------
    def table(self):
        import pandas as pd

        rows = []
        for i, groups in sorted(self.rankings.items()):
            order = " > ".join(" = ".join(repr(self.responses[i][m]) for m in g) for g in groups)
            rows.append({"prompt": self.tasks[i].prompt.strip(), "your ranking (best first)": order})
        return pd.DataFrame(rows)

    def comparison_rows(self) -> list[dict]:
        """The student's rankings as comparison rows (labeler id -1), like ``preference.label``."""
        rows = []
        for i, groups in sorted(self.rankings.items()):
            # duplicates of the same text cannot be compared
            for better, worse in ranking_to_pairs(groups):
                chosen, rejected = self.responses[i][better], self.responses[i][worse]
                if chosen == rejected:
                    continue
                rows.append({"prompt": self.tasks[i].prompt, "chosen": chosen, "rejected": rejected,
                             "ranking": json.dumps(groups), "labeler": STUDENT_ID,
                             "prompt_id": 1_000_000 + i, "task": self.tasks[i].to_json()})
        return rows
