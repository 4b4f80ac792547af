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
DPI = 150  # the book's PNGs; `make figures` draws the slide pack at a higher resolution (--dpi)

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
    model(x, rows[3], "SFT model\nπ$_{\\mathrm{ref}}$", light, dark)

    # Step 2: comparisons -> reward model.
    x, (_, _, light, dark) = xs[1], steps[1]
    step(x, rows[0], "Sample a prompt; the SFT\nmodel writes K responses\nA, B, C, D", dark)
    human(x, rows[1], "A labeler ranks them\nbest to worst\nD > C > A > B", dark)
    step(x, rows[2], "Train a scalar reward on\nall K(K\u22121)/2 pairs: the\nwinner should score higher", dark)
    model(x, rows[3], "Reward model\nr$_\\phi$(x, y)", light, dark)

    # Step 3: PPO against the reward model.
    x, (_, _, light, dark) = xs[2], steps[2]
    step(x, rows[0], "Sample a new prompt;\nno human writes or\nranks anything here", dark)
    step(x, rows[1], "The policy (a copy of\nthe SFT model at first)\nwrites a response", dark)
    step(x, rows[2], "Reward model scores it,\nminus a KL penalty to SFT;\nPPO updates, then repeat", dark)
    model(x, rows[3], "RLHF policy\nπ$_\\theta$", light, dark)

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

    fig.savefig(path, dpi=DPI, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    return path


# Illustrative labeling-cost constants for the K figure (seconds). The lab sets its own;
# only the shape of the trade-off matters here.
COST_READ_PROMPT_S = 30.0
COST_READ_RESPONSE_S = 20.0
COST_COMPARISON_S = 5.0


def _style_axes(ax):
    ax.spines[["top", "right"]].set_visible(False)
    ax.tick_params(labelsize=12, colors=INK)
    ax.grid(True, color="#e3e3e3", linewidth=0.8, zorder=0)
    ax.set_axisbelow(True)


def pairs_per_prompt(path: Path = HERE / "pairs_per_prompt.png") -> Path:
    """K-choose-2 pairs per ranking, and what a labeling hour buys at each K."""
    import math

    ks = list(range(2, 10))
    pairs = [k * (k - 1) // 2 for k in ks]

    def seconds(k: int) -> float:
        return COST_READ_PROMPT_S + COST_READ_RESPONSE_S * k + COST_COMPARISON_S * k * math.log2(k)

    prompts_per_hour = [3600.0 / seconds(k) for k in ks]
    pairs_per_hour = [p * n for p, n in zip(pairs, prompts_per_hour)]

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.9))
    fig.subplots_adjust(wspace=0.42)

    # Left: pairs from one ranking of K, against the K - 1 pairs that a chain of neighbours gives.
    _style_axes(left)
    left.bar(ks, pairs, color=OKABE_ITO["orange"], edgecolor=OKABE_ITO["vermillion"], linewidth=1.5,
             width=0.62, zorder=2, label="all pairs, K(K\u22121)/2")
    left.plot(ks, [k - 1 for k in ks], color=OKABE_ITO["blue"], marker="o", markersize=7, linewidth=2.2,
              zorder=3, label="neighbours only, K\u22121")
    for k, p in zip(ks, pairs):
        left.text(k, p + 0.6, str(p), ha="center", va="bottom", fontsize=12, color=INK)
    left.set_xticks(ks)
    left.set_xlabel("responses ranked per prompt, K", fontsize=13, color=INK)
    left.set_ylabel("comparisons from one ranking", fontsize=13, color=INK)
    left.set_ylim(0, 40)
    left.legend(fontsize=12, frameon=False, loc="upper left")
    left.set_title("One ranking, many pairs", fontsize=14, color=INK, fontweight="bold")

    # Right: one labeling hour under the illustrative cost model.
    _style_axes(right)
    right.plot(ks, pairs_per_hour, color=OKABE_ITO["vermillion"], marker="s", markersize=7, linewidth=2.4,
               zorder=3, label="pairs per hour")
    right.set_xticks(ks)
    right.set_xlabel("responses ranked per prompt, K", fontsize=13, color=INK)
    right.set_ylabel("pairs per labeling hour", fontsize=13, color=OKABE_ITO["vermillion"])
    right.set_ylim(0, max(pairs_per_hour) * 1.15)
    twin = right.twinx()
    twin.spines[["top"]].set_visible(False)
    twin.plot(ks, prompts_per_hour, color=OKABE_ITO["blue"], marker="o", markersize=7, linewidth=2.4,
              linestyle=(0, (5, 3)), zorder=3, label="prompts per hour")
    twin.set_ylabel("prompts per labeling hour", fontsize=13, color=OKABE_ITO["blue"])
    twin.set_ylim(0, max(prompts_per_hour) * 1.15)
    twin.tick_params(labelsize=12, colors=INK)
    lines = right.get_lines() + twin.get_lines()
    right.legend(lines, [line.get_label() for line in lines], fontsize=12, frameon=False, loc="upper center")
    right.set_title("One labeling hour (illustrative costs)", fontsize=14, color=INK, fontweight="bold")

    fig.savefig(path, dpi=DPI, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    return path


def reward_gap_loss(path: Path = HERE / "reward_gap_loss.png") -> Path:
    """The Bradley-Terry probability of a label, its negative log-likelihood, and the gradient."""
    import numpy as np

    gap = np.linspace(-6, 6, 481)
    prob = 1.0 / (1.0 + np.exp(-gap))
    loss = np.logaddexp(0.0, -gap)  # -log sigmoid(gap), computed stably
    grad = 1.0 / (1.0 + np.exp(gap))  # |d loss / d gap| = sigmoid(-gap)
    margin = 1.0
    loss_margin = np.logaddexp(0.0, -(gap - margin))

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.9))
    fig.subplots_adjust(wspace=0.3)

    _style_axes(left)
    left.plot(gap, prob, color=OKABE_ITO["blue"], linewidth=2.6, zorder=3)
    left.axhline(0.5, color=GREY, linewidth=1.2, linestyle=(0, (3, 3)))
    left.axvline(0.0, color=GREY, linewidth=1.2, linestyle=(0, (3, 3)))
    for g in (1.0, 2.0):
        p = 1.0 / (1.0 + np.exp(-g))
        left.plot([g], [p], marker="o", color=OKABE_ITO["blue"], markersize=7, zorder=4)
        left.annotate(f"gap {g:.0f}: {p:.2f}", (g, p), xytext=(g + 0.5, p - 0.13), fontsize=12, color=INK,
                      arrowprops=dict(arrowstyle="-", color=GREY, lw=1))
    left.set_xlabel("reward gap  r(x, y_w) \u2212 r(x, y_l)", fontsize=13, color=INK)
    left.set_ylabel("P(y_w preferred)  =  \u03c3(gap)", fontsize=13, color=INK)
    left.set_ylim(-0.02, 1.02)
    left.set_title("Bradley-Terry: the gap sets the odds", fontsize=14, color=INK, fontweight="bold")

    _style_axes(right)
    right.plot(gap, loss, color=OKABE_ITO["vermillion"], linewidth=2.6, zorder=3,
               label="loss  \u2212log \u03c3(gap)")
    right.plot(gap, grad, color=OKABE_ITO["bluish_green"], linewidth=2.4, linestyle=(0, (6, 3)), zorder=3,
               label="slope  |d loss / d gap| = \u03c3(\u2212gap)")
    right.plot(gap, loss_margin, color=OKABE_ITO["reddish_purple"], linewidth=2.0, linestyle=(0, (1.5, 2)),
               zorder=3, label=f"loss with margin m = {margin:.0f}")
    right.axvline(0.0, color=GREY, linewidth=1.2, linestyle=(0, (3, 3)))
    right.text(-3.2, 6.3, "confidently wrong:\nlarge loss, slope near 1", fontsize=12, color=INK, va="top")
    right.text(2.1, 1.45, "confidently right:\nloss and slope near 0", fontsize=12, color=INK, va="bottom")
    right.set_xlabel("reward gap  r(x, y_w) \u2212 r(x, y_l)", fontsize=13, color=INK)
    right.set_ylabel("loss per pair (nats) and its slope", fontsize=13, color=INK)
    right.set_ylim(-0.1, 8.2)
    right.legend(fontsize=12, frameon=False, loc="upper right")
    right.set_title("Its negative log-likelihood", fontsize=14, color=INK, fontweight="bold")

    fig.savefig(path, dpi=DPI, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    return path


def ppo_clip(path: Path = HERE / "ppo_clip.png") -> Path:
    """PPO's clipped surrogate for one token, as a function of the probability ratio ρ."""
    import numpy as np

    eps = 0.2
    rho = np.linspace(0.0, 2.0, 401)

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.9))
    fig.subplots_adjust(wspace=0.3)
    panels = (
        (axes[0], 1.0, "Advantage Â > 0 (here Â = +1)", (1 + eps, 2.0), "clipped:\nno gradient,\nno incentive to\nraise ρ further"),
        (axes[1], -1.0, "Advantage Â < 0 (here Â = \u22121)", (0.0, 1 - eps), "clipped:\nno gradient,\nno incentive to\nlower ρ further"),
    )
    for ax, adv, title, (lo, hi), note in panels:
        _style_axes(ax)
        unclipped = rho * adv
        clipped = np.clip(rho, 1 - eps, 1 + eps) * adv
        objective = np.minimum(unclipped, clipped)
        ax.axvspan(lo, hi, color=_tint(OKABE_ITO["orange"], 0.28), zorder=1, linewidth=0)
        ax.plot(rho, unclipped, color=OKABE_ITO["sky_blue"], linewidth=2.0, linestyle=(0, (5, 3)), zorder=2,
                label="unclipped  ρ \u00b7 Â")
        ax.plot(rho, objective, color=OKABE_ITO["blue"], linewidth=3.0, zorder=3,
                label="PPO  min(ρ Â, clip(ρ, 1\u2212\u03b5, 1+\u03b5) Â)")
        for edge in (1 - eps, 1 + eps):
            ax.axvline(edge, color=GREY, linewidth=1.2, linestyle=(0, (3, 3)), zorder=1)
        ax.axvline(1.0, color=INK, linewidth=1.2, zorder=1)
        ax.plot([1.0], [adv], marker="o", color=OKABE_ITO["vermillion"], markersize=8, zorder=4)
        ax.annotate("ρ = 1: the policy\nthat sampled the batch", (1.0, adv),
                    xytext=(0.08, -1.3) if adv > 0 else (0.08, -1.75), fontsize=12, color=INK,
                    arrowprops={"arrowstyle": "-", "color": GREY, "lw": 1})
        ax.text((lo + hi) / 2, 0.3 if adv > 0 else 0.6, note, ha="center", va="center", fontsize=12, color=INK)
        ax.set_xlim(0.0, 2.0)
        ax.set_ylim(-2.05, 2.05)
        ax.set_xticks([0.0, 0.5, 0.8, 1.0, 1.2, 1.5, 2.0])
        ax.set_xticklabels(["0", "0.5", "1\u2212\u03b5", "1", "1+\u03b5", "1.5", "2"])
        ax.set_xlabel(r"probability ratio  $\rho_t = \pi_\theta(y_t \mid s_t)\,/\,\pi_{\theta_{\mathrm{old}}}(y_t \mid s_t)$", fontsize=13, color=INK)
        ax.set_ylabel("objective for this token (maximised)", fontsize=13, color=INK)
        legend = ax.legend(fontsize=11.5, frameon=True, loc="upper left" if adv > 0 else "upper right")
        legend.get_frame().set(facecolor="white", edgecolor="none", alpha=1.0)
        ax.set_title(title, fontsize=14, color=INK, fontweight="bold")

    fig.savefig(path, dpi=DPI, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    return path


RESULTS = HERE.parents[1] / "benchmarks" / "results"


def _setting_label(run: dict) -> str:
    """A run of benchmarks/ppo_settings.py as ``80×128, β 0.3``, read from its full configuration."""
    cfg = run["config"]
    beta = f"β→{cfg['target_kl']:g} nat" if cfg["adaptive_kl"] else f"β {cfg['kl_coef']:g}"
    return f"{cfg['steps']}×{cfg['prompts_per_step']}, {beta}" + (" (preset)" if not run["setting"] else "")


def ppo_settings(path: Path = HERE / "ppo_settings.png") -> Path:
    """Gold score against KL to SFT for PPO under each setting of benchmarks/ppo_settings.py, beside
    the best-of-n curve from the same reward model, one panel per world (measured results)."""
    import json
    import sys

    sys.path.insert(0, str(HERE.parents[1]))
    from rlhf_minimal.plots import plot_gold_vs_kl

    fig, axes = plt.subplots(1, 2, figsize=(12, 5.2), layout="constrained", sharey=False)
    for ax, seed in zip(axes, (0, 1)):
        report = json.loads((RESULTS / f"ppo_settings_cpu_seed{seed}_on_cpu2.json").read_text())
        sft = report["runs"][0]["sampled"]["sft"]["gold_score"]
        points = {_setting_label(run): (run["sampled"]["ppo"]["kl_to_sft"],
                                                   run["sampled"]["ppo"]["gold_score"])
                  for run in report["runs"]}
        plot_gold_vs_kl(points, report["best_of_n_curve"], ax=ax)
        ax.axhline(sft, color=GREY, linestyle=":", linewidth=1.2, label="SFT (the evaluation's draw)")
        ax.set_title(f"cpu scale, seed {seed}", fontsize=11)
        ax.get_legend().remove()
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=4, fontsize=8.5, frameon=False)
    fig.savefig(path, dpi=DPI, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    return path


def ppo_budget(path: Path = HERE / "ppo_budget.png") -> Path:
    """PPO's gap closed against its rollout batches (one long run per world, evaluated part-way with
    four samples per prompt, ± one standard error), beside best-of-4 and best-of-16 from the same
    reward model (benchmarks/ppo_curve.py at the cpu scale)."""
    import json

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6), layout="constrained", sharey=True)
    for ax, seed in zip(axes, (0, 1)):
        report = json.loads((RESULTS / f"ppo_curve_cpu_seed{seed}_on_cpu2.json").read_text())
        points, bon = report["ppo_points"], report["best_of_n"]
        x = [p["batches"] for p in points]
        for n, colour, dash in ((4, OKABE_ITO["sky_blue"], "--"), (16, OKABE_ITO["blue"], ":")):
            i = bon["n"].index(n)
            ax.axhspan(bon["gap"][i] - bon["se_gap"][i], bon["gap"][i] + bon["se_gap"][i],
                       color=_tint(colour, 0.25), linewidth=0)
            ax.axhline(bon["gap"][i], color=colour, linestyle=dash, linewidth=1.6,
                       label=f"best-of-{n} (KL {bon['kl'][i]:.2f})")
        ax.errorbar(x, [p["sampled"]["gap"] for p in points], yerr=[p["sampled"]["se_gap"] for p in points],
                    color=OKABE_ITO["vermillion"], marker="o", capsize=3, label="PPO, sampled")
        ax.plot(x, [p["greedy"]["gap"] for p in points], color=OKABE_ITO["bluish_green"], marker="s",
                linestyle="-.", label="PPO, greedy (against greedy SFT)")
        for p in points:
            ax.annotate(f"{p['sampled']['kl']:.2f}", (p["batches"], p["sampled"]["gap"]), fontsize=8,
                        color=GREY, textcoords="offset points", xytext=(0, 9), ha="center")
        ax.axvline(120, color=GREY, linewidth=1, linestyle=":")
        ax.set_title(f"cpu scale, seed {seed} (grey numbers: PPO's KL to SFT)", fontsize=11)
        ax.set_xlabel("rollout batches of 64 responses (the preset: 120)", fontsize=11.5, color=INK)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("gap closed, SFT (0) to the writers (1)", fontsize=11.5, color=INK)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=4, fontsize=9, frameon=False)
    fig.savefig(path, dpi=DPI, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    return path


def reward_curve(path: Path = HERE / "reward_curve.png") -> Path:
    """The reward model's agreement with the gold order, and its accuracy on its labelers' labels
    beside their ceiling, against the number of training comparisons, for three kinds of label and
    two seeds (benchmarks/reward_curve.py at the cpu scale)."""
    import json

    report = json.loads((RESULTS / "reward_curve_cpu_on_cpu2.json").read_text())
    style = {"noiseless": (OKABE_ITO["blue"], "o", "noiseless labels"),
             "realistic": (OKABE_ITO["bluish_green"], "s", "realistic team, 3 votes a prompt"),
             "noisy": (OKABE_ITO["vermillion"], "^", "noisy labelers, 1 a prompt")}
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), layout="constrained")
    for kind, (colour, marker, label) in style.items():
        for seed, dash in ((0, "solid"), (1, (0, (4, 2)))):
            rows = sorted((r for r in report["rows"] if r["labels"] == kind and r["seed"] == seed),
                          key=lambda r: r["n_train_pairs"])
            if not rows:
                continue
            x = [r["n_train_pairs"] for r in rows]
            name = f"{label}, seed {seed}"
            axes[0].plot(x, [r["accuracy_vs_gold"] for r in rows], color=colour, marker=marker,
                         linestyle=dash, label=name)
            axes[1].plot(x, [r["accuracy"] for r in rows], color=colour, marker=marker, linestyle=dash)
            axes[1].plot(x, [r["ceiling"] for r in rows], color=colour, linestyle=":", linewidth=1.2)
    axes[0].axhline(0.85, color=GREY, linestyle=":", linewidth=1.2)
    axes[0].annotate("0.85", xy=(0.01, 0.85), xycoords=("axes fraction", "data"), color=GREY,
                     fontsize=10, va="bottom")
    axes[0].set_ylabel("test pairs ordered like the gold judge", fontsize=11.5, color=INK)
    axes[1].set_ylabel("accuracy on the test labels (dotted: ceiling)", fontsize=11.5, color=INK)
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("training comparisons", fontsize=11.5, color=INK)
        ax.grid(alpha=0.3)
    fig.legend(loc="outside lower center", ncol=3, fontsize=9, frameon=False)
    fig.savefig(path, dpi=DPI, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    return path


def results_ladder(path: Path = HERE / "results_ladder.png") -> Path:
    """Chapter 6's opening figure: base, SFT, the sharpening control, best-of-4 and PPO on the gold
    judge, seeds 0, 1 and 7 at the cpu scale, drawn from the committed pipeline reports."""
    import json
    import sys

    sys.path.insert(0, str(HERE.parents[1]))
    from rlhf_minimal.plots import plot_results_ladder

    reports = [json.loads((RESULTS / f"pipeline_cpu_seed{seed}_on_cpu2.json").read_text()) for seed in (0, 1, 7)]
    fig = plot_results_ladder(reports)
    fig.savefig(path, dpi=DPI, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    return path


def size_sweep(path: Path = HERE / "size_sweep.png") -> Path:
    """The InstructGPT headline in miniature: win rate against the medium SFT model by network size
    (the recorded run of lab 6, rlhf_minimal/recorded/size_sweep_cpu_seed0.json)."""
    import sys

    sys.path.insert(0, str(HERE.parents[1]))
    from rlhf_minimal import recorded
    from rlhf_minimal.plots import plot_size_sweep

    fig = plot_size_sweep(recorded.load("size_sweep", "cpu", 0)["result"])
    fig.savefig(path, dpi=DPI, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    return path


def sft_mask(path: Path = HERE / "sft_mask.png") -> Path:
    """One demonstration as the model sees it in SFT: the sequence, the target at each position
    (the next token), and the mask m_t of eq-sft-mask that keeps only the response's targets."""
    tokens = ["what", "does", "the", "bimo", "eat", "?", "<sep>", "the", "bimo", "eats", "fish", ".", "<eos>", "<pad>"]
    prompt_len = 7  # the prompt and its separator
    resp_end = 13  # one past <eos>
    fig, ax = plt.subplots(figsize=(15, 4.6))
    ax.set_xlim(-1.9, len(tokens) - 0.3)
    ax.set_ylim(-0.2, 3.75)
    ax.axis("off")
    w, h = 0.86, 0.62
    rows = {"input": 2.9, "target": 1.75, "mask": 0.6}
    ax.text(-1.85, rows["input"], "input $s_t$", va="center", fontsize=13, color=INK, fontweight="bold")
    ax.text(-1.85, rows["target"], "target $s_{t+1}$", va="center", fontsize=13, color=INK, fontweight="bold")
    ax.text(-1.85, rows["mask"], "mask $m_t$", va="center", fontsize=13, color=INK, fontweight="bold")
    for i, tok in enumerate(tokens):
        kind = "prompt" if i < prompt_len else ("response" if i < resp_end else "pad")
        fill = {"prompt": _tint(OKABE_ITO["sky_blue"], 0.35), "response": _tint(OKABE_ITO["orange"], 0.45),
                "pad": "#eeeeee"}[kind]
        edge = {"prompt": OKABE_ITO["blue"], "response": OKABE_ITO["vermillion"], "pad": GREY}[kind]
        _box(ax, i, rows["input"], w, h, tok, edge=edge, fill=fill, dashed=kind == "pad", size=11.5)
        if i + 1 < len(tokens):
            target = tokens[i + 1]
            counted = prompt_len - 1 <= i < resp_end - 1
            tkind = "response" if counted else ("pad" if i + 1 >= resp_end else "prompt")
            fill = {"prompt": _tint(OKABE_ITO["sky_blue"], 0.35), "response": _tint(OKABE_ITO["orange"], 0.45),
                    "pad": "#eeeeee"}[tkind]
            edge = {"prompt": OKABE_ITO["blue"], "response": OKABE_ITO["vermillion"], "pad": GREY}[tkind]
            _box(ax, i, rows["target"], w, h, target, edge=edge, fill=fill, dashed=tkind == "pad", size=11.5)
            _arrow(ax, (i, rows["input"] - h / 2), (i, rows["target"] + h / 2), colour=GREY, lw=1.2)
            ax.text(i, rows["mask"], "1" if counted else "0", ha="center", va="center", fontsize=15,
                    color=OKABE_ITO["vermillion"] if counted else GREY, fontweight="bold" if counted else "normal")
    ax.text((prompt_len - 1) / 2, 3.55, "prompt: given, never a target", ha="center", fontsize=12.5,
            color=OKABE_ITO["blue"])
    ax.text((prompt_len + resp_end - 1) / 2, 3.55, "response, with its end token: the loss is here",
            ha="center", fontsize=12.5, color=OKABE_ITO["vermillion"])
    ax.text(len(tokens) - 1, 3.55, "padding", ha="center", fontsize=12.5, color=GREY)
    fig.savefig(path, dpi=DPI, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    return path


def _chapter7() -> dict:
    import json

    return json.loads((RESULTS / "chapter7_cpu_seed0_on_cpu2.json").read_text())


def hallucination_outcomes(path: Path = HERE / "hallucination_outcomes.png") -> Path:
    """Chapter 7, hallucination: what SFT and the two PPO policies say to the 60 unanswerable
    held-out questions, sampled and greedy."""
    import sys

    sys.path.insert(0, str(HERE.parents[1]))
    from rlhf_minimal.plots import plot_unanswerable_outcomes

    data = _chapter7()["hallucination"]
    names, n = data["outcome_names"], data["n_unanswerable"]

    def row(decoding, model):
        return {**dict(zip(names, data["outcomes"][decoding][model])), "n": n}

    study = {guideline: {"sft_sampled": row("sampled", "SFT"), "sft_greedy": row("greedy", "SFT"),
                         "ppo_sampled": row("sampled", f"PPO, {guideline}"),
                         "ppo_greedy": row("greedy", f"PPO, {guideline}")}
             for guideline in ("helpful first", "truthful first")}
    fig = plot_unanswerable_outcomes(study)
    fig.savefig(path, dpi=DPI, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    return path


def language_transfer(path: Path = HERE / "language_transfer.png") -> Path:
    """Chapter 7, generalization: mean gold score of base, SFT and PPO asked in language A and in
    language B, greedy and sampled."""
    data = _chapter7()["generalization"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4), sharey=True, layout="constrained")
    for ax, decoding in zip(axes, ("greedy", "sampled")):
        _style_axes(ax)
        models = list(data["gold"][decoding])
        for j, (lang, colour, hatch) in enumerate(zip(data["languages"], (OKABE_ITO["blue"], OKABE_ITO["orange"]),
                                                      ("", "//"))):
            xs = [i + (j - 0.5) * 0.38 for i in range(len(models))]
            ys = [data["gold"][decoding][m][j] for m in models]
            ax.bar(xs, ys, 0.38, color=colour, hatch=hatch, edgecolor="white", label=lang, zorder=2)
            for x, y in zip(xs, ys):
                ax.text(x, y + (0.02 if y >= 0 else -0.06), f"{y:.2f}", ha="center", fontsize=11, color=INK)
        ax.axhline(0, color=INK, linewidth=0.8)
        ax.set_xticks(range(len(models)), models, fontsize=12)
        ax.set_title(f"{decoding} answers", fontsize=14, color=INK, fontweight="bold")
    axes[0].set_ylabel("mean gold score, 390 held-out prompts", fontsize=12, color=INK)
    axes[0].legend(fontsize=12, frameon=False, loc="upper left")
    fig.savefig(path, dpi=DPI, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    return path


def overoptimization_curve(path: Path = HERE / "overoptimization_curve.png") -> Path:
    """Chapter 7, over-optimisation: proxy and gold gain of best-of-n against d = sqrt(KL), with
    the fitted form d (a - b d) of Gao et al."""
    import numpy as np

    bon = _chapter7()["overoptimization"]["best_of_n"]
    fig, ax = plt.subplots(figsize=(9.5, 5.0), layout="constrained")
    _style_axes(ax)
    ax.plot(bon["d"], bon["proxy"], "s--", color=OKABE_ITO["orange"], linewidth=2.2, markersize=7,
            label="proxy: the reward model's score", zorder=3)
    ax.plot(bon["d"], bon["gold"], "o-", color=OKABE_ITO["blue"], linewidth=2.6, markersize=7,
            label="gold: the judge's score", zorder=3)
    d = np.linspace(0, max(bon["d"]), 200)
    a, b = bon["fit"]["a"], bon["fit"]["b"]
    ax.plot(d, d * (a - b * d), ":", color=INK, linewidth=2.0, label=f"fit d (a \u2212 b d), a = {a}, b = {b}")
    for n, x, y in zip(bon["n"], bon["d"], bon["gold"]):
        if n > 1:
            ax.annotate(f"n={n}", (x, y), textcoords="offset points", xytext=(0, -17), ha="center", fontsize=10.5,
                        color=INK)
    ax.axhline(0, color=GREY, linewidth=1.0)
    ax.set_xlabel("d = \u221aKL to SFT (nats\u00bd)", fontsize=13, color=INK)
    ax.set_ylabel("gain over SFT (SFT standard deviations)", fontsize=13, color=INK)
    ax.set_title("Best-of-n: the proxy keeps rising, the gold score peaks early", fontsize=14, color=INK,
                 fontweight="bold")
    ax.legend(fontsize=12, frameon=False, loc="upper left")
    fig.savefig(path, dpi=DPI, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    return path


def dpo_frontier(path: Path = HERE / "dpo_frontier.png") -> Path:
    """Chapter 7, DPO: gold score against KL to SFT for SFT, best-of-4 and -16, PPO and three DPO
    runs."""
    import sys

    sys.path.insert(0, str(HERE.parents[1]))
    from rlhf_minimal.plots import plot_gold_vs_kl

    points = {name: tuple(v) for name, v in _chapter7()["dpo"]["sampled_gold_and_kl"].items()}
    fig, ax = plt.subplots(figsize=(9, 5.0), layout="constrained")
    plot_gold_vs_kl(points, ax=ax)
    ax.axhline(points["SFT"][1], color=GREY, linestyle=":", linewidth=1.2)
    ax.set_title("What each method buys for its KL (best-of-n: upper bound on KL)")
    fig.savefig(path, dpi=DPI, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    return path


def modern_rl(path: Path = HERE / "modern_rl.png") -> Path:
    """Chapter 8's comparison (rlhf_minimal.modern_rl.comparison at the cpu scale, seeds 0 and 1:
    the recorded runs lab 12 shows), drawn by rlhf_minimal.plots.plot_modern_rl."""
    import sys

    sys.path.insert(0, str(HERE.parents[1]))
    from rlhf_minimal import recorded
    from rlhf_minimal.plots import plot_modern_rl

    fig = plot_modern_rl([recorded.load("modern_rl", "cpu", seed)["result"] for seed in (0, 1)])
    fig.savefig(path, dpi=DPI, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    return path


def interop_map(path: Path = HERE / "interop_map.png") -> Path:
    """Chapter 7, interoperability: each piece of the course's pipeline beside its counterpart in
    transformers and TRL, with the bridge that links them (export, stage_datasets, interop, hf)."""
    fig, ax = plt.subplots(figsize=(12, 9.0))
    ax.set_xlim(0, 1)
    ax.set_ylim(0.0, 1.0)
    ax.axis("off")

    lx, lw = 0.145, 0.25  # our column: centre and width
    rx, rw = 0.82, 0.33  # the libraries' column
    mx = (lx + lw / 2 + rx - rw / 2) / 2  # the links between them
    box_h = 0.085
    ours_light, ours_dark = OKABE_ITO["sky_blue"], OKABE_ITO["blue"]
    lib_light, lib_dark = OKABE_ITO["orange"], OKABE_ITO["vermillion"]

    ax.text(lx, 0.965, "rlhf_minimal (ours)", ha="center", va="center", fontsize=15, color=ours_dark,
            fontweight="bold")
    ax.text(rx, 0.965, "transformers and TRL", ha="center", va="center", fontsize=15, color=lib_dark,
            fontweight="bold")
    ax.text(mx, 0.965, "what links them", ha="center", va="center", fontsize=14, color=INK, fontweight="bold")

    # (ours, link, theirs, checked): checked links are solid, counterparts with their own loop dashed.
    rows = [
        ("GPT, RewardModel,\nword tokenizer",
         "export_causal_lm, export_reward_model\nsame logits and rewards",
         "GPT2LMHeadModel,\nGPT2ForSequenceClassification", True),
        ("every stage's data,\nas plain text",
         "stage_datasets\nsame token ids, checked row by row",
         "Dataset: prompt-completion,\nprompt-only, preference", True),
        ("train_sft\n(chapter 2)",
         "prompt-completion rows,\nloss on the response only",
         "SFTTrainer", False),
        ("train_reward_model,\npairwise_loss (chapter 4)",
         "the same loss on one batch (< 10\u207b\u2076);\nheld-out accuracy side by side",
         "RewardTrainer", True),
        ("train_ppo (chapter 5)\nvalue function and GAE",
         "TRL has no PPO trainer;\ngold score and KL side by side",
         "GRPOTrainer, RLOOTrainer\nbaseline from the group", False),
        ("train_dpo\n(the DPO section)",
         "the same comparisons,\nthe SFT model as reference",
         "DPOTrainer", False),
    ]
    ys = [0.855 - i * 0.118 for i in range(len(rows))]
    for y, (ours, link, theirs, checked) in zip(ys, rows):
        _box(ax, lx, y, lw, box_h, ours, edge=ours_dark, fill=_tint(ours_light, 0.35), size=12.5)
        _box(ax, rx, y, rw, box_h, theirs, edge=lib_dark, fill=_tint(lib_light, 0.35), size=12.5)
        _arrow(ax, (lx + lw / 2 + 0.004, y), (rx - rw / 2 - 0.004, y), colour=INK if checked else GREY,
               lw=2.2 if checked else 1.8, dashed=not checked)
        ax.text(mx, y + 0.008, link, ha="center", va="bottom", fontsize=11.5, color=INK, linespacing=1.25,
                bbox=dict(boxstyle="round,pad=0.15", facecolor="white", edgecolor="none"), zorder=5)

    # The bridge the other way: any transformers model runs in our stages.
    y = ys[-1] - 0.125
    hf_light, hf_dark = OKABE_ITO["bluish_green"], "#006e51"
    _box(ax, rx, y, rw, box_h, "any causal LM: GPT-2,\nSmolLM2-135M, a tiny model", edge=hf_dark,
         fill=_tint(hf_light, 0.3), size=12.5)
    _box(ax, lx, y, lw, box_h, "train_sft, train_ppo,\ntrain_reward_model", edge=hf_dark,
         fill=_tint(hf_light, 0.3), size=12.5)
    _arrow(ax, (rx - rw / 2 - 0.004, y), (lx + lw / 2 + 0.004, y), colour=hf_dark, lw=2.2)
    ax.text(mx, y + 0.008, "HFCausalLM, HFTokenizer: our stages\nrun on it, with our positions", ha="center", va="bottom",
            fontsize=11.5, color=INK, linespacing=1.25,
            bbox=dict(boxstyle="round,pad=0.15", facecolor="white", edgecolor="none"), zorder=5)

    # Legend: line style carries the meaning.
    ly = 0.035
    ax.plot([0.02, 0.08], [ly, ly], color=INK, linewidth=2.2)
    ax.text(0.09, ly, "the same thing, checked", va="center", fontsize=12, color=INK)
    ax.plot([0.40, 0.46], [ly, ly], color=GREY, linewidth=1.8, linestyle=(0, (4, 3)))
    ax.text(0.47, ly, "a counterpart: the same data, its own training loop", va="center", fontsize=12, color=INK)

    fig.savefig(path, dpi=DPI, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    return path


FIGURES = [three_steps, pairs_per_prompt, reward_gap_loss, ppo_clip, ppo_settings, reward_curve,
           results_ladder, size_sweep, sft_mask, hallucination_outcomes, language_transfer,
           overoptimization_curve, dpo_frontier, ppo_budget, modern_rl, interop_map]


def main(argv: list[str] | None = None) -> None:
    """Draw every figure. Without arguments, into book/figures at the book's resolution; with
    ``--out DIR --dpi N`` (``make figures``), a slide pack into DIR, the book's files untouched."""
    import argparse

    global DPI
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=None, help="folder for the PNGs (default: book/figures)")
    parser.add_argument("--dpi", type=int, default=DPI, help=f"resolution (default {DPI})")
    args = parser.parse_args(argv)
    DPI = args.dpi
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
    for make in FIGURES:
        print("wrote", make() if args.out is None else make(args.out / f"{make.__name__}.png"))


if __name__ == "__main__":
    main()
