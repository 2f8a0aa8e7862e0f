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


def security_figure(curves) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (by_eps, by_snr) = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for curve in curves:
        pts = curve["points"]
        label = f"{curve['victim']} / {curve['defense']} / {curve['attack']}"
        line = by_eps.plot([p["eps"] for p in pts], [p["accuracy"] for p in pts], marker="o", label=label)[0]
        snr = [(p["snr_db"], p["accuracy"]) for p in pts if p["snr_db"] is not None]
        if snr:
            by_snr.plot(*zip(*snr), marker="o", color=line.get_color())
    by_eps.set_xscale("log")
    by_eps.set(xlabel="eps (l-inf)", ylabel="accuracy of the defended victim", ylim=(-0.02, 1.02))
    by_snr.set(xlabel="SNR of the perturbation (dB)")
    by_snr.invert_xaxis()  # louder perturbations to the right, as larger eps on the left plot
    by_eps.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return _png(fig)


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
