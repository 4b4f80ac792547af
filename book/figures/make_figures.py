"""Draw the static figures of the book.

Run from anywhere:

    python book/figures/make_figures.py

Each figure is one function that writes one PNG next to this file. The colours are the
Okabe-Ito palette, which stays distinguishable under the common forms of colour blindness,
and every distinction that colour makes is also made by shape or text, so the figures
survive a grey-scale printer too. Sizes are chosen to stay readable on a slide.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

HERE = Path(__file__).resolve().parent

# Okabe-Ito palette.
OKABE_ITO = {
    "orange": "#E69F00",
    "sky_blue": "#56B4E9",
    "bluish_green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish_purple": "#CC79A7",
    "black": "#000000",
}
INK = "#222222"
GREY = "#6b6b6b"


def _tint(hex_colour: str, amount: float) -> tuple[float, float, float]:
    """Mix a colour with white; amount=0 gives white, amount=1 the colour itself."""
    r, g, b = (int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5))
    return (1 - amount * (1 - r), 1 - amount * (1 - g), 1 - amount * (1 - b))


def _box(ax, x, y, w, h, text, *, edge, fill, dashed=False, bold=False, size=12.5):
    """A rounded box centred at (x, y) with wrapped text already split into lines."""
    pad = 0.012  # the rounded border grows outward by `pad`, so shrink the core to keep the outer size
    patch = FancyBboxPatch(
        (x - w / 2 + pad, y - h / 2 + pad),
        w - 2 * pad,
        h - 2 * pad,
        boxstyle=f"round,pad={pad},rounding_size=0.018",
        linewidth=2.2,
        linestyle=(0, (5, 3)) if dashed else "solid",
        edgecolor=edge,
        facecolor=fill,
        zorder=2,
    )
    ax.add_patch(patch)
    ax.text(
        x,
        y,
        text,
        ha="center",
        va="center",
        fontsize=size,
        color=INK,
        fontweight="bold" if bold else "normal",
        linespacing=1.3,
        zorder=3,
    )
    return patch


def _arrow(ax, start, end, *, colour=INK, style="-|>", lw=2.0, rad=0.0, dashed=False):
    arrow = FancyArrowPatch(
        start,
        end,
        arrowstyle=style,
        mutation_scale=18,
        linewidth=lw,
        color=colour,
        linestyle=(0, (4, 3)) if dashed else "solid",
        connectionstyle=f"arc3,rad={rad}",
        shrinkA=1,
        shrinkB=1,
        zorder=4,
    )
    ax.add_patch(arrow)
    return arrow


def three_steps(path: Path = HERE / "three_steps.png") -> Path:
    """The InstructGPT recipe in three columns: SFT, reward model, PPO."""
    fig, ax = plt.subplots(figsize=(15, 8.6))
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.035, 1)
    ax.axis("off")

    steps = [
        ("Step 1", "Supervised fine-tuning", OKABE_ITO["sky_blue"], OKABE_ITO["blue"]),
        ("Step 2", "Reward model", OKABE_ITO["orange"], OKABE_ITO["vermillion"]),
        ("Step 3", "Reinforcement learning (PPO)", OKABE_ITO["bluish_green"], "#006e51"),
    ]
    xs = [0.165, 0.5, 0.835]
    col_w, box_w, model_w = 0.315, 0.265, 0.18
    top, bottom = 0.955, 0.105

    # Column backgrounds and headers.
    for (label, title, light, dark), x in zip(steps, xs):
        ax.add_patch(
            FancyBboxPatch(
                (x - col_w / 2, bottom),
                col_w,
                top - bottom,
                boxstyle="round,pad=0.004,rounding_size=0.02",
                linewidth=0,
                facecolor=_tint(light, 0.14),
                zorder=0,
            )
        )
        ax.text(x, top - 0.035, label, ha="center", va="center", fontsize=14, color=dark, fontweight="bold")
        ax.text(x, top - 0.075, title, ha="center", va="center", fontsize=15.5, color=INK, fontweight="bold")

    rows = [0.76, 0.585, 0.41, 0.215]
    box_h = 0.125

    def human(x, y, text, dark):
        return _box(ax, x, y, box_w, box_h, text, edge=dark, fill="white", dashed=True)

    def model(x, y, text, light, dark):
        return _box(ax, x, y, model_w, box_h, text, edge=dark, fill=_tint(light, 0.55), bold=True, size=13.5)

    def step(x, y, text, dark):
        return _box(ax, x, y, box_w, box_h, text, edge=dark, fill="white")

    # Step 1: demonstrations -> SFT.
    x, (_, _, light, dark) = xs[0], steps[0]
    step(x, rows[0], "Sample a prompt\nfrom the prompt set\n\"what does the bimo eat ?\"", dark)
    human(x, rows[1], "A labeler writes the\nresponse we want\n(a demonstration)", dark)
    step(x, rows[2], "Fine-tune the pretrained\nmodel on prompt \u2192 response,\nloss on response tokens", dark)
    model(x, rows[3], "SFT model\n\u03c0$^{\\mathrm{SFT}}$", light, dark)

    # Step 2: comparisons -> reward model.
    x, (_, _, light, dark) = xs[1], steps[1]
    step(x, rows[0], "Sample a prompt; the SFT\nmodel writes K responses\nA, B, C, D", dark)
    human(x, rows[1], "A labeler ranks them\nbest to worst\nD > C > A > B", dark)
    step(x, rows[2], "Train a scalar reward on\nall K(K\u22121)/2 pairs: the\nwinner should score higher", dark)
    model(x, rows[3], "Reward model\nr$_\\theta$(x, y)", light, dark)

    # Step 3: PPO against the reward model.
    x, (_, _, light, dark) = xs[2], steps[2]
    step(x, rows[0], "Sample a new prompt;\nno human writes or\nranks anything here", dark)
    step(x, rows[1], "The policy (a copy of\nthe SFT model at first)\nwrites a response", dark)
    step(x, rows[2], "Reward model scores it,\nminus a KL penalty to SFT;\nPPO updates, then repeat", dark)
    model(x, rows[3], "RLHF policy\n\u03c0$^{\\mathrm{RL}}_\\phi$", light, dark)

    # Vertical arrows inside each column.
    for (_, _, _, dark), x in zip(steps, xs):
        for upper, lower in zip(rows[:-1], rows[1:]):
            _arrow(ax, (x, upper - box_h / 2), (x, lower + box_h / 2), colour=dark)

    # Loop arrow in step 3: after each update the policy samples again.
    x3 = xs[2]
    _arrow(
        ax,
        (x3 + box_w / 2, rows[2]),
        (x3 + box_w / 2, rows[1]),
        colour=steps[2][3],
        rad=0.42,
        lw=1.8,
    )

    # Hand-offs between columns along the bottom row.
    y = rows[3]
    for (left, right), word in zip(((xs[0], xs[1]), (xs[1], xs[2])), ("initialises", "scores")):
        _arrow(ax, (left + model_w / 2, y), (right - model_w / 2, y), colour=INK, lw=2.4)
        ax.text((left + right) / 2, y + 0.018, word, ha="center", va="bottom", fontsize=12, color=INK)
    # The SFT model also initialises the policy and serves as the KL reference.
    _arrow(
        ax,
        (xs[0], y - box_h / 2),
        (xs[2], y - box_h / 2),
        colour=GREY,
        lw=2.0,
        rad=0.12,
    )
    ax.text(0.5, 0.045, "the SFT model also initialises the policy and stays frozen as its KL reference",
            ha="center", va="center", fontsize=12, color=GREY, style="italic")

    # Legend: shape carries the meaning, colour only groups the steps.
    lx, ly = 0.33, -0.005
    ax.add_patch(FancyBboxPatch((lx, ly - 0.012), 0.03, 0.024, boxstyle="round,pad=0.002", linewidth=1.8,
                                linestyle=(0, (2.5, 1.5)), edgecolor=INK, facecolor="white"))
    ax.text(lx + 0.038, ly, "dashed: human work", va="center", fontsize=12, color=INK)
    ax.add_patch(FancyBboxPatch((lx + 0.21, ly - 0.012), 0.03, 0.024, boxstyle="round,pad=0.002", linewidth=1.8,
                                edgecolor=INK, facecolor="#d9d9d9"))
    ax.text(lx + 0.248, ly, "filled: trained model", va="center", fontsize=12, color=INK)

    fig.savefig(path, dpi=150, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    return path


def main() -> None:
    for make in (three_steps,):
        print("wrote", make())


if __name__ == "__main__":
    main()
