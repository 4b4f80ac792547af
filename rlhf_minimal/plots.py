"""Figures the labs show. Okabe-Ito colours, readable in colour-blind vision and in grey."""
from __future__ import annotations

import matplotlib.pyplot as plt

OKABE_ITO = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]


def _axes(ax=None, figsize=(6.4, 3.6)):
    if ax is None:
        _, ax = plt.subplots(figsize=figsize, layout="constrained")
    return ax


def plot_pretraining(log: dict, ax=None):
    """Training and validation loss of pretraining against the step."""
    ax = _axes(ax)
    ax.plot(log["step"], log["train_loss"], color=OKABE_ITO[0], label="training loss")
    ax.plot(log["val_step"], log["val_loss"], "o-", color=OKABE_ITO[1], label="validation loss")
    ax.set(xlabel="step", ylabel="next-token loss (nats)", title="Pretraining the base model")
    ax.legend()
    return ax


def plot_family_scores(tables: dict, metric: str = "acceptable", ax=None, title: str | None = None):
    """Grouped bars: ``metric`` per task family for each model (``{model name: summary table}``)."""
    names = list(tables)
    families = [f for f in next(iter(tables.values())) if f != "all"] + ["all"]
    ax = _axes(ax, figsize=(9, 3.8))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        values = [tables[name].get(f, {}).get(metric, 0.0) for f in families]
        xs = [j + (i - (len(names) - 1) / 2) * width for j in range(len(families))]
        ax.bar(xs, values, width, label=name, color=OKABE_ITO[i % len(OKABE_ITO)],
               hatch=["", "//", "..", "xx"][i % 4], edgecolor="white")
    ax.set_xticks(range(len(families)), [f.replace("_", " ") for f in families], rotation=30, ha="right")
    label = "acceptable by the gold judge" if metric == "acceptable" else metric
    ax.set(ylabel=label, title=title or f"{label} per task family ('all': mean over families)")
    if metric == "acceptable":
        ax.set_ylim(0, 1.05)
    ax.legend(ncols=len(names), loc="upper left", fontsize="small")
    return ax


def plot_sft_epochs(log: dict):
    """SFT per epoch: training and validation loss (left), gold acceptable rate on held-out
    prompts (right)."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6), layout="constrained")
    epochs = log["epoch"]
    left.plot(epochs[1:], log["train_loss"][1:], "o-", color=OKABE_ITO[0], label="training loss")
    left.plot(epochs, log["val_loss"], "s--", color=OKABE_ITO[1], label="validation loss")
    left.set(xlabel="epoch", ylabel="loss on response tokens", title="SFT loss")
    left.legend()
    right.plot(epochs, log["val_acceptable"], "o-", color=OKABE_ITO[2], label="acceptable")
    right.plot(epochs, log["val_score"], "s--", color=OKABE_ITO[3], label="mean gold score")
    right.set(xlabel="epoch", ylabel="on held-out SFT prompts", title="SFT answers (gold judge)")
    right.legend()
    return fig


def plot_sloppy_sweep(rows: list[dict]):
    """What SFT copies: rates in the SFT model's answers against the share of sloppy demonstrations."""
    ax = _axes()
    xs = [r["sloppy_share"] for r in rows]
    for i, (key, label) in enumerate([("acceptable", "acceptable answers"),
                                      ("filler", "answers with filler"),
                                      ("false", "answers stating something false")]):
        ax.plot(xs, [r[key] for r in rows], ["o-", "s--", "^:"][i], color=OKABE_ITO[i], label=label)
    ax.set(xlabel="share of sloppy demonstrations", ylabel="share of the SFT model's answers",
           title="SFT copies its writers", ylim=(0, 1.02))
    ax.legend()
    return ax


def plot_priority_preferences(study: dict):
    """Bars: share of mixed pairs where the false or harmful response was preferred, per guideline."""
    ax = _axes()
    keys = [k for k in next(iter(study.values())) if k.endswith("preferred")]
    width = 0.8 / len(study)
    for i, (name, row) in enumerate(study.items()):
        xs = [j + (i - (len(study) - 1) / 2) * width for j in range(len(keys))]
        ax.bar(xs, [row[k] for k in keys], width, label=name, color=OKABE_ITO[i],
               hatch=["", "//"][i % 2], edgecolor="white")
    ax.set_xticks(range(len(keys)), [k.split(":")[0].replace("_", " ") for k in keys])
    ax.set(ylabel="false or harmful answer preferred", ylim=(0, 1),
           title="What the guidelines' priorities reward")
    ax.legend()
    return ax


def plot_k_study(rows: list[dict]):
    """Reward-model accuracy for K = 2, 4, 9 at the same labeling hours, beside the ceiling."""
    ax = _axes()
    ks = [str(r["K"]) for r in rows]
    ax.bar(ks, [r["accuracy"] for r in rows], color=OKABE_ITO[0], label="held-out accuracy")
    ax.plot(ks, [r["ceiling"] for r in rows], "k_", markersize=40, mew=2, label="ceiling")
    ax.plot(ks, [r["accuracy vs gold order"] for r in rows], "D", color=OKABE_ITO[1],
            label="accuracy against the gold order")
    for x, r in zip(ks, rows):
        ax.annotate(f"{r['prompts']} prompts\n{r['pairs']} pairs", (x, 0.52), ha="center", fontsize="small")
    ax.set(xlabel="K (responses ranked per prompt)", ylabel="pairwise accuracy", ylim=(0.5, 1.0),
           title=f"Same labeling budget ({rows[0]['hours']} hours)")
    ax.legend(loc="upper left", fontsize="small")
    return ax


def plot_calibration(calibration: dict):
    """Reliability diagram: predicted preference probability against observed frequency."""
    ax = _axes(figsize=(4.2, 4.2))
    ax.plot([0, 1], [0, 1], ":", color="grey", label="perfect calibration")
    ax.plot(calibration["predicted"], calibration["observed"], "o-", color=OKABE_ITO[0],
            label="reward model")
    ax.set(xlabel="predicted P(a preferred to b)", ylabel="observed share a preferred",
           title="Calibration on held-out comparisons", xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="upper left", fontsize="small")
    return ax


def plot_length_probe(probe: dict):
    """Reward and gold score against response length, one point per response."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6), layout="constrained", sharex=True)
    left.scatter(probe["lengths"], probe["gold"], s=10, alpha=0.5, color=OKABE_ITO[1])
    left.set(xlabel="response length (words)", ylabel="gold score",
             title=f"Gold (corr. with length {probe['gold_vs_length']:+.2f})")
    right.scatter(probe["lengths"], probe["rewards"], s=10, alpha=0.5, color=OKABE_ITO[0])
    right.set(xlabel="response length (words)", ylabel="normalised reward",
              title=f"Reward model (corr. with length {probe['reward_vs_length']:+.2f})")
    return fig


_PPO_PANELS = [
    ("scores", [("rm_score", "reward-model score (normalised)"), ("gold_score", "gold score (evaluation only)")]),
    ("KL to the SFT reference", [("kl", "KL per response (nats)")]),
    ("beta", [("kl_coef", "KL coefficient beta")]),
    ("entropy", [("entropy", "entropy per token (nats)")]),
    ("clipping", [("clip_fraction", "clip fraction")]),
    ("old vs new policy", [("approx_kl", "approx. KL old->new (k3)")]),
    ("value function", [("value_loss", "value loss"), ("explained_variance", "explained variance")]),
    ("responses", [("length", "length (tokens)"), ("no_eos", "share without EOS")]),
]


def plot_ppo_curves(logs: dict, panels: list[str] | None = None):
    """The PPO dashboard: one panel per logged quantity, one line per run (``{run name: log}``).

    A panel with two quantities draws the second dashed, on a right-hand axis.
    """
    chosen = [p for p in _PPO_PANELS if panels is None or p[0] in panels]
    cols = min(len(chosen), 4)
    rows = -(-len(chosen) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.7 * rows), layout="constrained",
                             squeeze=False)
    for ax, (title, series) in zip(axes.flat, chosen):
        twin = ax.twinx() if len(series) == 2 else None
        for r, (name, log) in enumerate(logs.items()):
            colour = OKABE_ITO[r % len(OKABE_ITO)]
            ax.plot(log["step"], log[series[0][0]], color=colour, label=name)
            if twin is not None:
                twin.plot(log["step"], log[series[1][0]], color=colour, linestyle="--")
        if twin is not None:
            twin.set_ylabel(f"{series[1][1]} (dashed)", fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("rollout batch", fontsize=8)
        ax.set_ylabel(series[0][1], fontsize=8)
    for ax in list(axes.flat)[len(chosen):]:
        ax.axis("off")
    if len(logs) > 1:
        axes.flat[0].legend(fontsize=8)
    return fig


def plot_policy_comparison(evaluation: dict, ax=None):
    """Mean gold score of each model, sampled and greedy, with the KL to SFT in the labels."""
    ax = _axes(ax, figsize=(7, 3.4))
    names = list(evaluation["sampled"])
    for i, decoding in enumerate(("sampled", "greedy")):
        models = evaluation[decoding]
        xs = [j + (i - 0.5) * 0.38 for j, n in enumerate(names) if n in models]
        ys = [models[n]["gold_score"] for n in names if n in models]
        ax.bar(xs, ys, 0.38, color=OKABE_ITO[i], hatch=["", "//"][i], edgecolor="white",
               label=f"{decoding} ({'temperature 1' if decoding == 'sampled' else 'argmax'})")
    labels = []
    for n in names:
        kl = evaluation["sampled"][n].get("kl")
        labels.append(f"{n.replace('_', ' ')}\nKL {kl:.1f}" if kl is not None else n)
    ax.set_xticks(range(len(names)), labels)
    ax.set(ylabel="mean gold score", title="Held-out prompts: SFT, PPO and best-of-n")
    ax.legend(fontsize=8)
    return ax


def plot_pipeline_results(report: dict):
    """Two panels from a pipeline report: seconds per stage, and the share of the way from SFT to
    the demonstration writers that each model closes (sampled and greedy; 0 is SFT, 1 the writers).
    The base model is left out of the second panel: it is far below SFT (its gap is in the report)."""
    from .pipeline import model_label

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.6), layout="constrained",
                                      gridspec_kw={"width_ratios": [1, 1.6]})
    stages = list(report["stages"])
    seconds = [report["stages"][s]["seconds"] for s in stages]
    left.barh(stages[::-1], seconds[::-1], color=OKABE_ITO[0])
    left.set(xlabel="seconds", title=f"Time per stage ({report['device']}, total {report['total_seconds']:.0f} s)")
    names = [n for n in report["results"]["sampled"] if n != "base"]
    for i, decoding in enumerate(("sampled", "greedy")):
        rows = report["results"][decoding]
        xs = [j + (i - 0.5) * 0.38 for j, n in enumerate(names) if n in rows]
        ys = [rows[n]["gap_closed"] for n in names if n in rows]
        right.bar(xs, ys, 0.38, color=OKABE_ITO[1 + i], hatch=["", "//"][i], edgecolor="white",
                  label=decoding)
        for x, y in zip(xs, ys):
            right.text(x, max(y, 0) + 0.02, f"{y:.2f}", ha="center", fontsize=8)
    right.axhline(0, color="black", linewidth=0.8, linestyle=":")
    labels = {"writers": "writers", "ppo_likelihood": "PPO on SFT's\nlikelihood"}
    right.set_xticks(range(len(names)), [labels.get(n) or model_label(n) for n in names])
    right.set(ylim=(min(-0.2, *(r["gap_closed"] for d in ("sampled", "greedy")
                                  for n, r in report["results"][d].items() if n != "base")) - 0.05, 1.12),
              ylabel="gap closed (0: SFT, 1: writers)",
              title=f"{report['n_eval_prompts']} held-out prompts, gold judge")
    right.legend(fontsize=8, loc="upper left")
    return fig


def plot_data_scale(rows: list[dict], ax=None):
    """Horizontal bars on a log scale: how much data each stage uses, ours beside InstructGPT's."""
    ax = _axes(ax, figsize=(7.5, 3.4))
    ys = range(len(rows))
    ax.barh([y + 0.2 for y in ys], [r["ours"] for r in rows], 0.4, color=OKABE_ITO[0], label="this course")
    ax.barh([y - 0.2 for y in ys], [r["instructgpt"] for r in rows], 0.4, color=OKABE_ITO[1],
            hatch="//", edgecolor="white", label="InstructGPT")
    ax.set_yticks(list(ys), [r["what"] for r in rows])
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set(xlabel="count (log scale)", title="Data per stage")
    ax.legend(fontsize=8, loc="lower right")
    return ax


def plot_size_sweep(sweep: dict):
    """InstructGPT's headline in miniature: win rate against the medium SFT model of base, SFT and
    PPO at each network size, sampled and greedy."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), layout="constrained", sharey=True)
    sizes = sweep["sizes"]
    params = [sweep["parameters"][s] / 1e6 for s in sizes]
    markers = {"base": "s", "sft": "o", "ppo": "^"}
    labels = {"base": "base (pretrained only)", "sft": "SFT", "ppo": "PPO"}
    for ax, decoding in zip(axes, ("sampled", "greedy")):
        for i, model in enumerate(("base", "sft", "ppo")):
            ax.plot(params, [sweep[decoding][s][model] for s in sizes], marker=markers[model],
                    color=OKABE_ITO[i], label=labels[model])
        ax.axhline(0.5, color="black", linewidth=0.8, linestyle=":")
        ax.set_xscale("log")
        ax.set_xticks(params, [f"{s}\n{p:.2f}M" for s, p in zip(sizes, params)])
        ax.minorticks_off()
        ax.set(xlabel="network size (parameters)", title=f"{decoding} answers")
    axes[0].set_ylabel("win rate vs medium SFT")
    axes[0].set_ylim(0, 1)
    axes[0].legend(fontsize=8)
    return fig


def plot_unanswerable_outcomes(study: dict):
    """Stacked bars per policy (sampled and greedy): how the held-out unanswerable questions were
    answered: declined, made up, or something else. ``study`` is from
    :func:`rlhf_minimal.hallucination.hallucination_study`."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), layout="constrained", sharey=True)
    first = next(iter(study.values()))
    for ax, decoding in zip(axes, ("sampled", "greedy")):
        bars = [("SFT", first[f"sft_{decoding}"])]
        bars += [(f"PPO,\n{name}", entry[f"ppo_{decoding}"]) for name, entry in study.items()]
        bottom = [0.0] * len(bars)
        for i, outcome in enumerate(("declined", "made up", "other")):
            heights = [b[outcome] for _, b in bars]
            ax.bar(range(len(bars)), heights, 0.6, bottom=bottom, color=OKABE_ITO[[2, 5, 7][i]],
                   hatch=["", "//", ".."][i], edgecolor="white", label=outcome)
            bottom = [b + h for b, h in zip(bottom, heights)]
        ax.set_xticks(range(len(bars)), [name for name, _ in bars])
        ax.set(ylim=(0, 1), title=f"{decoding} answers to unanswerable questions")
    axes[0].set_ylabel(f"share of {first['sft_sampled']['n']} prompts")
    axes[1].legend(fontsize=8, loc="upper right")
    return fig


def plot_language_transfer(study: dict, decoding: str = "greedy"):
    """Gold score of base, SFT and PPO on the same held-out prompts asked in language A and in
    language B, beside the share of answers written in B. ``study`` is from
    :func:`rlhf_minimal.generalization.generalization_study`."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.4), layout="constrained")
    models = list(study[decoding])
    for i, lang in enumerate(("a", "b")):
        xs = [j + (i - 0.5) * 0.38 for j in range(len(models))]
        left.bar(xs, [study[decoding][m][lang]["gold_score"] for m in models], 0.38, color=OKABE_ITO[i],
                 hatch=["", "//"][i], edgecolor="white", label=f"asked in language {lang.upper()}")
        right.bar(xs, [study[decoding][m][lang]["answers_in_b"] for m in models], 0.38, color=OKABE_ITO[i],
                  hatch=["", "//"][i], edgecolor="white", label=f"asked in language {lang.upper()}")
    names = {"base": "base", "sft": "SFT", "ppo": "PPO"}
    for ax in (left, right):
        ax.set_xticks(range(len(models)), [names.get(m, m) for m in models])
        ax.legend(fontsize=8)
    left.set(ylabel="mean gold score", title=f"Following instructions ({decoding})")
    right.set(ylabel="share of answers in B", ylim=(0, 1), title="Answering in the asker's language")
    return fig


def plot_overoptimization(study: dict):
    """Gao et al.'s picture: proxy (dashed) and gold (solid) reward against sqrt(KL) for
    best-of-n and for PPO at each KL coefficient, with the fitted functional forms (dotted).
    ``study`` is from :func:`rlhf_minimal.overoptimization.overoptimization_study`."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained")
    bon = study["best_of_n"]
    ax = axes[0]
    ax.plot(bon["d"], bon["proxy"], "o--", color=OKABE_ITO[1], label="proxy (reward model)")
    ax.plot(bon["d"], bon["gold"], "o-", color=OKABE_ITO[0], label="gold (judge)")
    ax.plot(bon["d"], bon["fit"]["fitted"], ":", color="black", label="fit d(a − b d)")
    for n, d, g in zip(bon["n"], bon["d"], bon["gold"]):
        ax.annotate(f"n={n}", (d, g), fontsize=7, textcoords="offset points", xytext=(0, -11), ha="center")
    ax.set(title="Best-of-n", xlabel="sqrt(KL) to SFT (nats^½)", ylabel="reward gain (SFT standard deviations)")
    ax.legend(fontsize=8)
    ax = axes[1]
    for i, (beta, curve) in enumerate(study["rl"].items()):
        colour = OKABE_ITO[[0, 2, 3, 5][i % 4]]
        # KL does not grow monotonically batch by batch: points, not a path, and the fit along d
        ax.plot(curve["d"], curve["proxy"], "x", color=colour, alpha=0.6, markersize=4, label=f"proxy, β = {beta}")
        ax.plot(curve["d"], curve["gold"], "o", color=colour, markersize=3.5, label=f"gold, β = {beta}")
        order = sorted(range(len(curve["d"])), key=curve["d"].__getitem__)
        ax.plot([curve["d"][i] for i in order], [curve["fit"]["fitted"][i] for i in order], ":", color=colour)
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set(title="PPO: a point per batch; dotted: fit d(a − b log d)",
           xlabel="sqrt(KL) to SFT (nats^½)")
    ax.legend(fontsize=8)
    return fig


def plot_gold_vs_kl(points: dict, bon: dict | None = None, ax=None):
    """Gold score against KL to SFT: one marker per policy (``{name: (kl, gold)}``) and, optionally,
    the best-of-n curve (``{"kl": [...], "gold_score": [...], "n": [...]}``)."""
    ax = _axes(ax, figsize=(6.4, 3.8))
    if bon is not None:
        ax.plot(bon["kl"], bon["gold_score"], "o--", color=OKABE_ITO[4], label="best-of-n")
        for n, k, g in zip(bon["n"], bon["kl"], bon["gold_score"]):
            ax.annotate(f"{n}", (k, g), fontsize=7, textcoords="offset points", xytext=(3, 3))
    markers = ["s", "^", "D", "v", "P", "X", "*", "h"]
    colours = [OKABE_ITO[j] for j in (0, 1, 2, 3, 5, 7)]  # sky blue is the curve's; yellow is faint
    for i, (name, (kl, gold)) in enumerate(points.items()):
        ax.plot([kl], [gold], markers[i % len(markers)], markersize=9, color=colours[i % len(colours)], label=name)
    ax.set(xlabel="KL to SFT (nats per response)", ylabel="mean gold score (sampled)",
           title="What each method buys for its KL")
    ax.legend(fontsize=8)
    return ax


# The rungs of chapter 6's results figure, in the order a reader climbs them.
LADDER = (("base", "base"), ("sft", "SFT"), ("ppo_likelihood", "sharpening\ncontrol"),
          ("best_of_4", "best-of-4"), ("ppo", "PPO"), ("writers", "writers"))


def plot_results_ladder(reports: list[dict]):
    """Chapter 6's headline: mean gold score of base, SFT, the sharpening control (PPO on SFT's
    likelihood), best-of-4 and PPO, with the demonstration writers as the ceiling, one line per
    seed, sampled (left) and greedy (right). ``reports`` are pipeline reports
    (``python -m rlhf_minimal run``), one per seed; a model a decoding lacks (best-of-n is sampled
    only) is left out of that panel, not drawn as zero."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained", sharey=True)
    markers = ["o", "s", "^", "D", "v"]
    for ax, decoding in zip(axes, ("sampled", "greedy")):
        for i, report in enumerate(reports):
            rows = report["results"][decoding]
            xs = [j for j, (key, _) in enumerate(LADDER) if key in rows]
            ys = [rows[key]["gold_score"] for key, _ in LADDER if key in rows]
            ax.plot(xs, ys, marker=markers[i % len(markers)], linestyle=(0, (1, 2)) if i else "-",
                    color=OKABE_ITO[i % len(OKABE_ITO)], markersize=7,
                    label=f"seed {report['seed']} ({report['n_eval_prompts']} prompts)")
        ax.set_xticks(range(len(LADDER)), [label for _, label in LADDER])
        ax.get_xticklabels()[LADDER.index(("ppo", "PPO"))].set_fontweight("bold")
        ax.grid(axis="y", alpha=0.3)
        ax.set_title(f"{decoding} answers" + (" (temperature 1)" if decoding == "sampled" else " (argmax)"))
    first = reports[0]
    machine = (f"{first['cpu_threads']} CPU cores" if first["device"] == "cpu" else first["device"])
    axes[0].set_ylabel("mean gold score, held-out prompts")
    axes[0].legend(fontsize=8, loc="lower right")
    fig.suptitle(f"From base to PPO on the gold judge ({first['scale']} scale, {machine})", fontsize=11)
    return fig


MODERN_LABELS = {"ppo": "PPO", "grpo": "GRPO", "grpo_verifier": "GRPO +\nverifier", "rloo": "RLOO",
                 "dpo": "DPO", "best_of_4": "best-of-4", "best_of_16": "best-of-16",
                 "rejection": "rejection\nsampling FT", "rlaif": "RLAIF\n(GRPO)"}


def plot_modern_rl(reports: list[dict], decoding: str = "sampled"):
    """Two panels from ``benchmarks/modern_rl.py`` reports (one per seed): the share of the gap
    from SFT to the writers each method closes, and its change in mean gold score over SFT on the
    held-out prompts a verifier can check and on those it cannot. One marker per seed, bars at
    the mean."""
    names = [n for n in MODERN_LABELS if n in reports[0]["methods"][decoding]]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 3.8), layout="constrained")
    xs = range(len(names))
    for ax, panels in ((left, [("gap_closed", None)]), (right, [("verifiable", 0), ("unverifiable", 1)])):
        width = 0.8 / len(panels)
        for k, (column, colour) in enumerate(panels):
            per_seed = []
            for report in reports:
                rows, sft = report["methods"][decoding], report["methods"][decoding]["sft"]
                per_seed.append([rows[n]["gap_closed"] if column == "gap_closed"
                                 else rows[n][column]["gold_score"] - sft[column]["gold_score"] for n in names])
            offset = (k - (len(panels) - 1) / 2) * width
            means = [sum(s[j] for s in per_seed) / len(per_seed) for j in xs]
            label = {"gap_closed": None, "verifiable": "prompts a verifier can check",
                     "unverifiable": "prompts it cannot (stories, refusals, unanswerable)"}[column]
            ax.bar([x + offset for x in xs], means, width, color=OKABE_ITO[colour or 0],
                   hatch=["", "//"][k], edgecolor="white", label=label)
            for s, seed_values in enumerate(per_seed):
                ax.plot([x + offset for x in xs], seed_values, "o", color="black", markersize=3,
                        label=("one seed" if s == 0 and k == 0 else None))
        ax.axhline(0, color="black", linewidth=0.8, linestyle=":")
        ax.set_xticks(list(xs), [MODERN_LABELS[n] for n in names], fontsize=8, rotation=30, ha="right")
        ax.legend(fontsize=8, loc="upper left")
    seeds = ", ".join(str(r["seed"]) for r in reports)
    left.set(ylabel="gap closed (0: SFT, 1: writers)",
             title=f"{reports[0]['scale']} scale, seeds {seeds}, {decoding}, gold judge")
    right.set(ylabel="change in mean gold score vs SFT", title="Where each method helps")
    return fig
