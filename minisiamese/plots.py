"""Figures (matplotlib, written as PNG files; nothing is shown on screen)."""
import numpy as np

from .fileio import atomic_write

TRAIN_COLOUR, VAL_COLOUR = "tab:orange", "c"


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend: the one matplotlib setup of the library."""
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    return plt


def save_figure(fig, path, dpi=110):
    """Write ``fig`` as a PNG at ``path`` atomically, then free it."""
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=dpi))
    pyplot().close(fig)


def plot_history(history, path):
    """Loss and accuracy per epoch: training orange, validation cyan."""
    plt = pyplot()
    ep = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, title in ((axes[0], "loss", "loss (BCE + L2)"), (axes[1], "accuracy", "accuracy")):
        ax.plot(ep, [h[key] for h in history], "o-", color=TRAIN_COLOUR, label="training")
        ax.plot(ep, [h["val_" + key] for h in history], "o-", color=VAL_COLOUR, label="validation")
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def plot_roc(fpr, tpr, auc, path):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot(fpr, tpr, color=VAL_COLOUR, label=f"AUC = {auc:.3f}")
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("ROC on the test pairs")
    ax.legend(loc="lower right")
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def plot_reliability(curves, path, title):
    """Reliability diagram: per equal-width bin of p(same), the fraction of
    same-person pairs against the mean p, one line per entry of ``curves``
    ({label: (labels, probabilities)}), with each curve's ECE in its label and
    the bins' pair counts below."""
    from .calibration import ece, reliability
    plt = pyplot()
    fig, (ax, hist) = plt.subplots(2, 1, figsize=(4.8, 6), gridspec_kw={"height_ratios": [3, 1]}, sharex=True)
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=0.8, label="perfectly calibrated")
    for (label, (y, p)), colour in zip(curves.items(), ("tab:red", VAL_COLOUR, TRAIN_COLOUR)):
        count, mean_p, freq = reliability(y, p)
        used = count > 0
        ax.plot(mean_p[used], freq[used], "o-", color=colour, label=f"{label} (ECE {ece(y, p):.3f})")
        hist.hist(np.asarray(p), bins=len(count), range=(0, 1), histtype="step", color=colour)
    ax.set_ylabel("fraction of same-person pairs")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    hist.set_xlabel("p(same)")
    hist.set_ylabel("pairs")
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def plot_pair_extremes(pairset, p, path, k=4):
    """Rows: the worst false negatives, the worst false positives, the most
    confident correct same-person pairs; each pair with its probability."""
    plt = pyplot()
    y = pairset.labels
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    groups = [("worst false negatives", pos[np.argsort(p[pos])][:k]),
              ("worst false positives", neg[np.argsort(-p[neg])][:k]),
              ("best same-person pairs", pos[np.argsort(-p[pos])][:k])]
    fig, axes = plt.subplots(3, 2 * k, figsize=(2 * k * 1.2, 3 * 1.5))
    for r, (title, rows) in enumerate(groups):
        for c in range(k):
            for side in (0, 1):
                ax = axes[r, 2 * c + side]
                ax.axis("off")
                if c < len(rows):
                    x1, x2, _ = pairset.batch([rows[c]])
                    ax.imshow((x1 if side == 0 else x2)[0, 0], cmap="gray", vmin=0, vmax=1)
                    if side == 0:
                        ax.set_title(f"p={p[rows[c]]:.2f}", fontsize=8, loc="left")
        axes[r, 0].text(-0.1, 0.5, title, transform=axes[r, 0].transAxes, rotation=90, va="center",
                        ha="right", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)


def plot_oneshot(tasks, scores, chosen, pairset, path, k=2):
    """The k best and k worst one-shot tasks (by the positive's margin): the
    anchor, then every candidate with its probability; the correct candidate
    framed green, the model's choice marked with a red title when wrong."""
    plt = pyplot()
    answers = np.array([t.answer for t in tasks])
    pos_score = scores[np.arange(len(tasks)), answers]
    masked = scores.copy()
    masked[np.arange(len(tasks)), answers] = -np.inf
    margin = pos_score - masked.max(axis=1)
    order = np.argsort(margin)
    pick = list(order[::-1][:k]) + list(order[:k])
    n_way = scores.shape[1]
    fig, axes = plt.subplots(len(pick), n_way + 1, figsize=((n_way + 1) * 1.1, len(pick) * 1.4))
    axes = np.atleast_2d(axes)
    for r, ti in enumerate(pick):
        t = tasks[ti]
        axes[r, 0].imshow(pairset.image_batch([t.anchor])[0, 0], cmap="gray", vmin=0, vmax=1)
        axes[r, 0].set_title("anchor" if r else "anchor (best)", fontsize=7)
        for c in range(n_way):
            ax = axes[r, c + 1]
            ax.imshow(pairset.image_batch([t.candidates[c]])[0, 0], cmap="gray", vmin=0, vmax=1)
            mark = "*" if c == chosen[ti] else ""
            colour = "green" if c == t.answer else ("red" if c == chosen[ti] else "black")
            ax.set_title(f"{mark}{scores[ti, c]:.2f}", fontsize=7, color=colour)
            if c == t.answer:
                for s in ax.spines.values():
                    s.set_edgecolor("green")
                    s.set_linewidth(2)
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle("one-shot tasks: best (top) and worst (bottom); * = model's choice, green = correct", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)


def plot_lake_runs(runs, chosen, path, title, n_runs=4, items=5):
    """The first ``items`` test items of the first ``n_runs`` of Lake's runs (:class:`minisiamese.omniglot.
    LakeRuns`), a row per run: each item as query, the training image the model chose (red title when wrong)
    and the correct one."""
    plt = pyplot()
    names = runs.names[:n_runs]
    fig, axes = plt.subplots(len(names), 3 * items, figsize=(3 * items * 0.9, len(names) * 1.2))
    axes = np.atleast_2d(axes)
    for r in range(len(names)):
        rows = np.flatnonzero(runs.run == r)[:items]
        for k in range(items):
            cells = axes[r, 3 * k:3 * k + 3]
            if k < len(rows):
                t = runs.tasks[rows[k]]
                right = chosen[rows[k]] == t.answer
                shown = ((t.anchor, f"{names[r]} q{k + 1}", "black"),
                         (t.candidates[chosen[rows[k]]], "chosen", "black" if right else "red"),
                         (t.candidates[t.answer], "correct", "green"))
                for ax, (row, label, colour) in zip(cells, shown):
                    ax.imshow(runs.table.image_batch([row])[0, 0], cmap="gray", vmin=0, vmax=1)
                    ax.set_title(label, fontsize=6, color=colour)
            for ax in cells:
                ax.set_xticks([])
                ax.set_yticks([])
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
