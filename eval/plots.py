"""The report's figures (matplotlib, inline PNG): transfer and survival heat maps, success against PESQ, security
curves and one example's perturbation."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import soundfile as sf

from eval.tables import defense_cost, robust_accuracy, transfer_table, undefended
from staa.io.atomic import safe_name


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _heat(ax, matrix, rows, cols, title, cmap="magma_r"):
    data = np.array([[np.nan if v is None else v for v in r] for r in matrix], dtype=float)
    im = ax.imshow(data, vmin=0, vmax=1, cmap=cmap, aspect="auto")
    ax.set_xticks(range(len(cols)), cols, rotation=40, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    for i in range(len(rows)):
        for j in range(len(cols)):
            if not np.isnan(data[i, j]):
                r, g, b, _ = im.cmap(
                    im.norm(data[i, j])
                )  # the text in whichever of black and white contrasts with the cell
                ax.text(
                    j,
                    i,
                    f"{data[i, j]:.2f}",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if 0.299 * r + 0.587 * g + 0.114 * b < 0.5 else "black",
                )
    ax.set_title(title)
    return im


def plots(cells, run: Path) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figs = {}
    defenses = [d for d in dict.fromkeys(c["defense"] for c in cells) if d != "none"]
    pairs = list(dict.fromkeys((c["victim"], c["attack"]) for c in cells))
    lookup = {(c["victim"], c["attack"], c["defense"]): c for c in cells}
    if defenses:
        fig, ax = plt.subplots(figsize=(1.2 + 0.75 * len(defenses), 0.9 + 0.4 * len(pairs)))
        _heat(
            ax,
            [[lookup[(v, a, d)]["survival"] for d in defenses] for v, a in pairs],
            [f"{v} / {a}" for v, a in pairs],
            defenses,
            "Survival: share of successful attacks that still fool the defended model",
        )
        figs["survival"] = _png(fig)

    fig = _success_vs_pesq(plt, cells)
    figs["success_vs_pesq"] = _png(fig)

    t = transfer_table(cells)
    fig, ax = plt.subplots(figsize=(1.5 + 0.9 * len(t["columns"]), 0.9 + 0.45 * len(t["rows"])))
    _heat(
        ax,
        [[t["success_rate"][a][v] for v in t["columns"]] for a in t["rows"]],
        t["rows"],
        t["columns"],
        "Success rate of each attack on each victim (no defense)",
        cmap="viridis",
    )
    figs["transfer"] = _png(fig)

    robust = robust_accuracy(cells)
    cols = list(next(iter(robust.values())))
    fig, ax = plt.subplots(figsize=(1.5 + 0.9 * len(cols), 0.9 + 0.45 * len(robust)))
    _heat(
        ax,
        [[row.get(k) for k in cols] for row in robust.values()],
        list(robust),
        cols,
        "Accuracy, clean and under each attack (no defense)",
        cmap="viridis",
    )
    figs["robust_accuracy"] = _png(fig)

    cost = defense_cost(cells)
    all_defs = list(dict.fromkeys(c["defense"] for c in cells))
    fig, ax = plt.subplots(figsize=(1.5 + 0.7 * len(all_defs), 3.5))
    width = 0.8 / len(cost)
    for k, (v, accs) in enumerate(cost.items()):
        ax.bar(np.arange(len(all_defs)) + k * width, [accs[d] for d in all_defs], width, label=v)
    ax.set_xticks(np.arange(len(all_defs)) + 0.4 - width / 2, all_defs, rotation=40, ha="right")
    ax.set(ylabel="clean accuracy", ylim=(0, 1), title="Clean accuracy under each defense")
    ax.legend(fontsize=7)
    figs["defense_accuracy"] = _png(fig)

    example = example_files(run, cells)
    if example:
        figs["perturbation"] = _perturbation_figure(plt, *example[:2])
    return figs


MARKERS = "osD^vP*Xp<>h"


def _success_vs_pesq(plt, cells):
    """Colour is the victim, the marker the attack, both keyed in one legend beside the plot: text labels next to the
    points would overlap wherever two attacks score alike."""
    points = [c for c in undefended(cells) if c["pesq"] is not None]
    victims = list(dict.fromkeys(c["victim"] for c in points))
    attacks = list(dict.fromkeys(c["attack"] for c in points))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for c in points:
        ax.scatter(
            c["pesq"],
            c["success_rate"],
            s=40,
            color=colours[victims.index(c["victim"]) % len(colours)],
            marker=MARKERS[attacks.index(c["attack"]) % len(MARKERS)],
        )
    ax.set(
        xlabel="PESQ-wb of adversarial vs clean (higher = less audible)",
        ylabel="success rate",
        ylim=(-0.05, 1.05),
        title="Success vs quality",
    )
    from matplotlib.lines import Line2D

    def key(label, **style):
        return Line2D([], [], linestyle="none", label=label, **style)

    handles = [key(v, marker="o", color=colours[i % len(colours)]) for i, v in enumerate(victims)]
    handles += [key(a, marker=MARKERS[i % len(MARKERS)], color="0.4") for i, a in enumerate(attacks)]
    ax.legend(
        handles=handles,
        title="colour: victim; marker: attack",
        fontsize=7,
        title_fontsize=7,
        loc="upper left",
        bbox_to_anchor=(1.01, 1),
    )
    return fig


MAX_PANELS = 12


def security_figure(curves) -> str:
    return _png(security_plot(curves))


def security_plot(curves):
    """Small multiples, one panel per victim x defense (x budget kind): accuracy against eps (log) or against the
    SNR budget, one line per attack. Attacks of equal accuracy would hide each other, so each line has its own
    marker and is drawn a little apart along the budget axis; the budgets are the ticks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels: dict = {}
    for curve in curves:
        kind = "eps" if curve["points"][0].get("eps") is not None else "snr_budget"
        panels.setdefault((curve["victim"], curve["defense"], kind), []).append(curve)
    keys = list(panels)[:MAX_PANELS]
    attacks = list(dict.fromkeys(c["attack"] for c in curves))
    cols = min(3, len(keys))
    rows = -(-len(keys) // cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(3.6 * cols, 2.9 * rows + 0.6), sharey=True, squeeze=False, layout="constrained"
    )
    for ax, key in zip(axes.flat, keys):
        victim, defense, kind = key
        group = panels[key]
        for i, curve in enumerate(group):
            shift = i - (len(group) - 1) / 2
            xs = [p[kind] for p in curve["points"]]
            # a dodge of 3% of a decade on the log eps axis, 0.4 dB on the SNR axis
            xs = [x * 10 ** (0.03 * shift) for x in xs] if kind == "eps" else [x + 0.4 * shift for x in xs]
            n = attacks.index(curve["attack"])
            ax.plot(
                xs,
                [p["accuracy"] for p in curve["points"]],
                marker=MARKERS[n % len(MARKERS)],
                color=f"C{n % 10}",
                markersize=5,
                alpha=0.85,
            )
        budgets = sorted({p[kind] for c in group for p in c["points"]})
        if kind == "eps":
            ax.set_xscale("log")
            ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
            ax.set_xlabel("eps (l-inf)", fontsize=8)
        else:
            ax.invert_xaxis()  # louder perturbations to the right, as larger eps
            ax.set_xlabel("SNR budget (dB)", fontsize=8)
        ax.set_xticks(budgets, [f"{b:g}" for b in budgets], rotation=45 if len(budgets) > 3 else 0, fontsize=7)
        ax.set_title(f"{victim} / {defense}", fontsize=8)
        ax.set_ylim(-0.04, 1.04)
        ax.tick_params(axis="y", labelsize=7)
    for ax in axes.flat[len(keys) :]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("accuracy, defended", fontsize=8)
    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], marker=MARKERS[i % len(MARKERS)], color=f"C{i % 10}", label=a) for i, a in enumerate(attacks)
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(6, len(attacks)), fontsize=7, frameon=False)
    if len(panels) > MAX_PANELS:
        fig.suptitle(
            f"the first {MAX_PANELS} of {len(panels)} victim x defense panels; report.json has all", fontsize=8
        )
    return fig


def example_files(run: Path, cells):
    """(clean, adversarial, label) of the first example of the first generator attack (else the first attack)."""
    order = sorted(
        dict.fromkeys((c["victim"], c["attack"], c["attack_kind"]) for c in cells), key=lambda t: t[2] != "generator"
    )
    for victim, attack, _ in order:
        folder = run / "examples" / safe_name(victim) / safe_name(attack)
        if (folder / "0_clean.wav").is_file() and (folder / "0_adv.wav").is_file():
            return folder / "0_clean.wav", folder / "0_adv.wav", f"{attack} on {victim}"
    return None


def _perturbation_figure(plt, clean_path, adv_path):
    clean, rate = sf.read(clean_path, dtype="float32")
    adv, _ = sf.read(adv_path, dtype="float32")
    delta = adv - clean
    t = np.arange(len(clean)) / rate
    fig, axes = plt.subplots(4, 1, figsize=(9, 7), sharex=True)
    axes[0].plot(t, clean, lw=0.4)
    axes[0].set_ylabel("clean")
    axes[1].plot(t, delta, lw=0.4, color="tab:red")
    axes[1].set_ylabel("perturbation")
    axes[2].fill_between(t, (delta != 0).astype(float), step="mid", lw=0, color="black")
    axes[2].set_ylabel("mask")
    axes[2].set_yticks([0, 1])
    axes[3].specgram(
        delta + 1e-7 * np.random.default_rng(0).standard_normal(len(delta)),
        Fs=rate,
        NFFT=512,
        noverlap=384,
        cmap="magma",
    )  # a noise floor: log of exact zeros
    axes[3].set(ylabel="Hz (perturbation)", xlabel="seconds")
    axes[0].set_title(
        f"Example perturbation: {100 * (delta != 0).mean():.1f}% of samples changed, max |delta| {np.abs(delta).max():.4f}"
    )
    return _png(fig)
