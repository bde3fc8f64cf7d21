#!/usr/bin/env python3
"""Regenerate the walkthrough's figures under docs/figures/.

    python docs/make_figures.py                                   # im2col layout, gradient-check errors
    python docs/make_figures.py --checkpoint runs/baseline/model.npz --history runs/baseline/history.json
                                                                  # + conv1 filters, feature maps, curves
"""
import argparse
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from minisiamese import losses, ops  # noqa: E402
from minisiamese.gradcheck import numeric_grad, rel_error  # noqa: E402
from minisiamese.im2col import im2col  # noqa: E402

OUT = os.path.join(HERE, "figures")


def im2col_layout(path):
    """A 4x4 image with 2 channels, a 3x3 kernel: 4 windows -> a 4 x 18 column matrix."""
    H = W = 4
    C = 2
    x = np.arange(H * W * C, dtype=float).reshape(1, H, W, C)      # value = pixel id
    cols = im2col(x, 3, 3)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.2), gridspec_kw={"width_ratios": [1, 1, 4.5]})
    for c in range(C):
        ax = axes[c]
        ax.imshow(x[0, :, :, c] // C, cmap="tab20", vmin=0, vmax=19)      # colour = pixel
        for i in range(H):
            for j in range(W):
                ax.text(j, i, int(x[0, i, j, c]), ha="center", va="center", fontsize=9)
        ax.add_patch(plt.Rectangle((-0.5, -0.5), 3, 3, fill=False, lw=2, color="k"))
        ax.set_title(f"channel {c}")
        ax.set_xticks([])
        ax.set_yticks([])
    ax = axes[2]
    ax.imshow(cols // C, cmap="tab20", vmin=0, vmax=19, aspect="auto")
    for r in range(cols.shape[0]):
        for k in range(cols.shape[1]):
            ax.text(k, r, int(cols[r, k]), ha="center", va="center", fontsize=8)
    ax.set_yticks(range(4), [f"(oh={r // 2}, ow={r % 2})" for r in range(4)])
    ax.set_xticks(range(18), [f"{k // 6},{(k // 2) % 3},{k % 2}" for k in range(18)], fontsize=6, rotation=90)
    ax.set_xlabel("column = (i, j, c): window row, window column, channel")
    ax.set_title("cols: one row per output position (the framed window is row 0)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def gradcheck_errors(path):
    rng = np.random.default_rng(0)
    errs = {}

    def check(name, f_out, backward, x):
        out = f_out()
        g = rng.standard_normal(np.shape(out))
        errs[name] = rel_error(backward(g), numeric_grad(lambda: np.sum(f_out() * g), x))

    x = rng.standard_normal((2, 7, 7, 3))
    w, b = rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
    _, cache = ops.conv2d_forward(x, w, b, 2, 1)
    check("conv2d dx", lambda: ops.conv2d_forward(x, w, b, 2, 1)[0], lambda g: ops.conv2d_backward(g, cache)[0], x)
    check("conv2d dw", lambda: ops.conv2d_forward(x, w, b, 2, 1)[0], lambda g: ops.conv2d_backward(g, cache)[1], w)
    xp = rng.permutation(2 * 6 * 6 * 3).reshape(2, 6, 6, 3) * 1e-2
    _, pc = ops.maxpool2d_forward(xp, 2)
    check("maxpool2d", lambda: ops.maxpool2d_forward(xp, 2)[0], lambda g: ops.maxpool2d_backward(g, pc), xp)
    xd, wd, bd = rng.standard_normal((4, 6)), rng.standard_normal((6, 3)), rng.standard_normal(3)
    _, dc = ops.dense_forward(xd, wd, bd)
    check("dense dx", lambda: ops.dense_forward(xd, wd, bd)[0], lambda g: ops.dense_backward(g, dc)[0], xd)
    check("dense dw", lambda: ops.dense_forward(xd, wd, bd)[0], lambda g: ops.dense_backward(g, dc)[1], wd)
    xr = rng.standard_normal((3, 4, 4, 2)) + 0.01
    br = rng.standard_normal(2)
    _, rc = ops.bias_relu_forward(xr.copy(), br)
    check("bias+ReLU", lambda: ops.bias_relu_forward(xr.copy(), br)[0], lambda g: ops.bias_relu_backward(g.copy(), rc)[0], xr)
    xs = rng.standard_normal((4, 5))
    _, sc = ops.sigmoid_forward(xs)
    check("sigmoid", lambda: ops.sigmoid_forward(xs)[0], lambda g: ops.sigmoid_backward(g, sc), xs)
    h1, h2 = rng.standard_normal((3, 5)), rng.standard_normal((3, 5))
    _, jc = ops.l1_join_forward(h1, h2)
    check("L1 join", lambda: ops.l1_join_forward(h1, h2)[0], lambda g: ops.l1_join_backward(g, jc)[0], h1)
    mask_rng = lambda: np.random.default_rng(5)  # noqa: E731
    _, mc = ops.dropout_forward(xs, 0.3, True, mask_rng())
    check("dropout", lambda: ops.dropout_forward(xs, 0.3, True, mask_rng())[0], lambda g: ops.dropout_backward(g, mc), xs)
    z, y = 3 * rng.standard_normal(8), rng.integers(0, 2, 8).astype(float)
    _, lc = losses.bce_with_logits_forward(z, y)
    errs["sigmoid+BCE"] = rel_error(losses.bce_with_logits_backward(lc),
                                    numeric_grad(lambda: losses.bce_with_logits_forward(z, y)[0], z))
    wl = rng.standard_normal(10)
    errs["L2 penalty"] = rel_error(losses.l2_penalty(wl, 1e-3)[1], numeric_grad(lambda: losses.l2_penalty(wl, 1e-3)[0], wl))
    fig, ax = plt.subplots(figsize=(7, 3.5))
    names = list(errs)
    ax.bar(names, [max(errs[n], 1e-17) for n in names], color="c")
    ax.axhline(1e-7, color="tab:orange", ls="--", label="test threshold 1e-7")
    ax.set_yscale("log")
    ax.set_ylabel("relative error (float64)")
    ax.set_title("analytic vs central-difference gradients, random upstream gradient")
    ax.tick_params(axis="x", rotation=45)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return errs


def trained_figures(checkpoint, data_dir):
    from minisiamese.data import load_image, read_pairs
    from minisiamese.evaluate import load_trained
    net, normalizer, _ = load_trained(checkpoint, "cpu")
    w = net.params["conv1.w"]                                        # (64, 1, 10, 10)
    fig, axes = plt.subplots(8, 8, figsize=(6, 6))
    for k, ax in enumerate(axes.flat):
        ax.imshow(w[k, 0], cmap="gray")
        ax.axis("off")
    fig.suptitle("conv1 filters of the trained baseline (each scaled to its own range)")
    fig.tight_layout()
    fig.savefig(os.path.join(OUT, "conv1_filters.png"), dpi=110)
    plt.close(fig)
    pair = read_pairs(os.path.join(data_dir, "pairsDevTest.txt"))[0]
    from minisiamese.data import image_path
    face = load_image(image_path(data_dir, pair.name1, pair.num1)).astype(np.float32) / 255
    x = normalizer(face[None, :, :, None])
    maps, _ = ops.conv2d_forward(x, net.params["conv1.w"], net.params["conv1.b"])
    maps = np.maximum(maps, 0)[0]                                    # (96, 96, 64)
    fig, axes = plt.subplots(4, 9, figsize=(10, 4.6))
    axes[0, 0].imshow(face, cmap="gray")
    axes[0, 0].set_title("input", fontsize=8)
    for k, ax in enumerate(axes.flat[1:]):
        ax.imshow(maps[:, :, k], cmap="viridis")
    for ax in axes.flat:
        ax.axis("off")
    fig.suptitle("conv1 + ReLU feature maps (first 35 of 64) for one test face")
    fig.tight_layout()
    fig.savefig(os.path.join(OUT, "feature_maps.png"), dpi=110)
    plt.close(fig)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", help="a trained model.npz for the filter and feature-map figures")
    p.add_argument("--history", help="a history.json for the training-curve figure")
    from minisiamese.data import default_data_dir
    p.add_argument("--data-dir", default=default_data_dir())
    args = p.parse_args()
    os.makedirs(OUT, exist_ok=True)
    im2col_layout(os.path.join(OUT, "im2col_layout.png"))
    errs = gradcheck_errors(os.path.join(OUT, "gradcheck_errors.png"))
    print("gradient-check relative errors:", {k: f"{v:.1e}" for k, v in errs.items()})
    if args.checkpoint:
        trained_figures(args.checkpoint, args.data_dir)
    if args.history:
        import json
        from minisiamese.plots import plot_history
        with open(args.history) as f:
            plot_history(json.load(f), os.path.join(OUT, "training_curves.png"))
    print(f"figures written to {OUT}")


if __name__ == "__main__":
    main()
