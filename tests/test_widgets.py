"""Lab 3's "be the labeler" panel, driven as a person would, without a browser: the widget is
built, its dropdowns are set and its buttons clicked. Core ipywidgets only, so this runs on
ipywidgets 7.7 (Colab's; the lowest-versions and Colab-like checks run this file) and on 8."""
import json

import pytest

from rlhf_minimal.preference import ranking_to_pairs
from rlhf_minimal.widgets import RankingPanel, ranks_to_groups

ipywidgets = pytest.importorskip("ipywidgets")


def _buttons(box):
    """The panel's buttons, found by description, wherever they sit in the layout."""
    found, todo = {}, [box]
    while todo:
        item = todo.pop()
        if isinstance(item, ipywidgets.Button):
            found[item.description] = item
        todo += list(getattr(item, "children", ()))
    return found


@pytest.fixture()
def panel(ci_world, monkeypatch):
    monkeypatch.delenv("RLHF_NONINTERACTIVE", raising=False)  # a person at the keyboard
    tasks = ci_world.splits["rm"][:3]
    responses = [[f"answer {i}-{j}" for j in range(4)] for i in range(len(tasks))]
    return RankingPanel(tasks, responses, answers=[[1, 2, 3, 4]] * len(tasks))


def test_answers_are_ignored_when_a_person_ranks(panel):
    assert panel.rankings == {} and panel.index == 0


def test_clicking_through_the_panel_records_the_rankings_as_comparison_rows(panel):
    box = panel.widget()
    buttons = _buttons(box)
    assert set(buttons) == {"Save ranking, next prompt", "Skip"}
    header = box.children[0]
    assert "0 of 3 prompts ranked" in header.value

    for dropdown, rank in zip(panel._dropdowns, [2, 1, 2, 3]):  # a tie between responses 0 and 2
        dropdown.value = rank
    buttons["Save ranking, next prompt"].click()
    assert panel.rankings[0] == [[1], [0, 2], [3]]
    assert "1 of 3 prompts ranked" in header.value

    buttons["Skip"].click()                        # prompt 2 left unranked
    for dropdown, rank in zip(panel._dropdowns, [4, 3, 2, 1]):
        dropdown.value = rank
    buttons["Save ranking, next prompt"].click()
    assert "All done" in header.value and sorted(panel.rankings) == [0, 2]

    rows = panel.comparison_rows()
    assert len(rows) == len(ranking_to_pairs([[1], [0, 2], [3]])) + 6
    first = rows[0]
    assert first["labeler"] == -1 and json.loads(first["ranking"]) == [[1], [0, 2], [3]]
    assert first["chosen"] == "answer 0-1" and first["rejected"] in ("answer 0-0", "answer 0-2")


def test_ranks_to_groups_orders_best_first_with_ties():
    assert ranks_to_groups([3, 1, 1, 2]) == [[1, 2], [3], [0]]
