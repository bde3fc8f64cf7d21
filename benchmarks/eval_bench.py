"""Evaluation and identification by embeddings, on the real LFW-a data.

1. The 500 10-way one-shot tasks of pairsDevTest and View 2 (pairs.txt, 10
   folds): wall time scoring every pair through both towers (as evaluation did
   before embeddings) against embedding each distinct face once, same model,
   same numbers (checked).
2. Identification: a gallery of every LFW-a person (one image each, 5,749),
   embedded with an empty cache and again from the cache; 100 queries against
   it, time per query.
3. With a trained model (--checkpoint): closed-set rank-1 and rank-5
   identification accuracy on the people of pairsDevTest with at least two
   images (gallery: their first image; queries: every other image).

Speed does not depend on the weights, so without --checkpoint parts 1 and 2
run with a freshly initialised baseline.

    python benchmarks/eval_bench.py [--checkpoint runs/baseline/model.npz] [--data-dir DIR] [--json out.json]
"""
import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import machine  # noqa: E402

from minisiamese import ModelConfig, SiameseNet, oneshot  # noqa: E402
from minisiamese.backend import tune_cpu_allocator  # noqa: E402
from minisiamese.data import default_data_dir, images_root, load_pairset, pairset_from_pairs, read_pairs_folds  # noqa: E402
from minisiamese.evaluate import Embeddings, evaluate_folds, load_trained, predict  # noqa: E402
from minisiamese.identify import Gallery, identify  # noqa: E402
from minisiamese.data import Normalizer  # noqa: E402


def pairwise_predict(net, normalizer, pairset, batch_size=128):
    """The old way: both towers on every pair."""
    out = []
    for i in range(0, len(pairset), batch_size):
        x1, x2, _ = pairset.batch(np.arange(i, min(len(pairset), i + batch_size)))
        out.append(net.predict_proba(normalizer(x1), normalizer(x2), batch_size))
    return np.concatenate(out)


def timed(fn):
    t = time.perf_counter()
    r = fn()
    return r, time.perf_counter() - t


def bench_evaluation(net, norm, data_dir, cache_dir):
    test = load_pairset(data_dir, "pairsDevTest.txt", cache_dir, net.config.input_size, net.config.crop)
    tasks = oneshot.build_tasks(test, 10, 0)
    a = np.repeat([t.anchor for t in tasks], 10)
    c = np.concatenate([t.candidates for t in tasks])

    def old_oneshot():
        probs = [net.predict_proba(norm(test.image_batch(a[i:i + 128])), norm(test.image_batch(c[i:i + 128])))
                 for i in range(0, len(a), 128)]
        return np.concatenate(probs).reshape(len(tasks), 10)

    def new_oneshot():
        emb = Embeddings(net, norm, test, np.concatenate([a, c]))
        return oneshot.score_tasks(tasks, emb.probs)

    old_s, t_old = timed(old_oneshot)
    new_s, t_new = timed(new_oneshot)
    res = {"oneshot": {"tasks": len(tasks), "pair_forwards": int(len(a)),
                       "distinct_faces": int(len(np.unique(np.concatenate([a, c])))),
                       "pairwise_s": t_old, "embedded_s": t_new,
                       "max_abs_diff": float(np.abs(old_s - new_s).max()),
                       "same_answers": bool((old_s.argmax(1) == new_s.argmax(1)).all())}}
    path = os.path.join(data_dir, "pairs.txt")
    folds = read_pairs_folds(path)
    sets = [pairset_from_pairs(data_dir, f, path, cache_dir, net.config.input_size, net.config.crop) for f in folds]
    old_p, t_old = timed(lambda: [pairwise_predict(net, norm, s) for s in sets])
    new_res, t_new = timed(lambda: evaluate_folds(net, norm, data_dir, path, cache_dir))
    new_p = [predict(net, norm, s) for s in sets]
    res["view2"] = {"pairs": int(sum(len(s) for s in sets)), "pairwise_s": t_old, "embedded_s": t_new,
                    "distinct_faces": int(sum(len(np.unique(np.concatenate([s.idx1, s.idx2]))) for s in sets)),
                    "max_abs_diff": float(max(np.abs(o - n).max() for o, n in zip(old_p, new_p))),
                    "accuracy_mean": new_res["accuracy_mean"]}
    return res


def one_image_per_person(data_dir, out):
    """A gallery folder of links: <Person>.jpg -> the person's first image."""
    root = os.path.abspath(images_root(data_dir))
    people = sorted(os.listdir(root))
    for p in people:
        first = sorted(os.listdir(os.path.join(root, p)))[0]
        os.symlink(os.path.join(root, p, first), os.path.join(out, p + ".jpg"))
    return people


def bench_gallery(net, norm, checkpoint, data_dir, n_queries=100):
    with tempfile.TemporaryDirectory() as tmp:
        folder, cache = os.path.join(tmp, "gallery"), os.path.join(tmp, "cache")
        os.makedirs(folder)
        people = one_image_per_person(data_dir, folder)
        g, t_cold = timed(lambda: Gallery(net, norm, folder, checkpoint, cache))
        g2, t_warm = timed(lambda: Gallery(net, norm, folder, checkpoint, cache))
        assert g2.embedded == 0
        rng = np.random.default_rng(0)
        root = os.path.abspath(images_root(data_dir))
        queries = []
        for p in rng.choice(people, n_queries, replace=False):
            imgs = sorted(os.listdir(os.path.join(root, p)))
            queries.append(os.path.join(root, p, imgs[-1]))
        _, t_q = timed(lambda: identify(net, norm, g2, queries, top=5))
    return {"gallery_people": len(people), "embed_cold_s": t_cold, "from_cache_s": t_warm,
            "queries": n_queries, "per_query_s": t_q / n_queries}


def bench_rank(net, norm, data_dir, cache_dir, checkpoint):
    """Closed-set identification on pairsDevTest's people with >= 2 images."""
    test = load_pairset(data_dir, "pairsDevTest.txt", cache_dir, net.config.input_size, net.config.crop)
    root = os.path.abspath(images_root(data_dir))
    people = sorted({k[0] for k in test.keys})
    multi = [p for p in people if len(os.listdir(os.path.join(root, p))) >= 2]
    with tempfile.TemporaryDirectory() as tmp:
        gallery, queries, truth = os.path.join(tmp, "g"), [], []
        os.makedirs(gallery)
        for p in multi:
            imgs = sorted(os.listdir(os.path.join(root, p)))
            os.symlink(os.path.join(root, p, imgs[0]), os.path.join(gallery, p + ".jpg"))
            queries += [os.path.join(root, p, f) for f in imgs[1:]]
            truth += [p] * (len(imgs) - 1)
        g = Gallery(net, norm, gallery, checkpoint)
        results = identify(net, norm, g, queries, top=5, threshold=0.0)
    ranks = [next((k for k, (p, _) in enumerate(r["top"]) if p == t), 99) for r, t in zip(results, truth)]
    ranks = np.array(ranks)
    return {"people": len(multi), "queries": len(queries), "rank1": float(np.mean(ranks < 1)),
            "rank5": float(np.mean(ranks < 5))}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", help="model.npz of a trained model (needed for the rank-1/rank-5 figures)")
    p.add_argument("--data-dir", default=default_data_dir())
    p.add_argument("--cache-dir", default=os.path.join(os.path.expanduser("~"), ".cache", "minisiamese"))
    p.add_argument("--skip", nargs="*", default=[], choices=["evaluation", "gallery", "rank"])
    p.add_argument("--json")
    args = p.parse_args()
    tune_cpu_allocator()
    if args.checkpoint:
        net, norm, _ = load_trained(args.checkpoint, "cpu")
        checkpoint = args.checkpoint
    else:
        net, norm = SiameseNet(ModelConfig(), seed=0), Normalizer()
        net.params["out.w"] = -np.abs(net.params["out.w"])
        checkpoint = __file__                          # any file: the cache key of an untrained model
    out = {"machine": machine(), "checkpoint": args.checkpoint}
    if "evaluation" not in args.skip:
        out.update(bench_evaluation(net, norm, args.data_dir, args.cache_dir))
        o, v = out["oneshot"], out["view2"]
        print(f"one-shot, {o['tasks']} 10-way tasks ({o['pair_forwards']} pairs, {o['distinct_faces']} distinct "
              f"faces): pair by pair {o['pairwise_s']:.1f} s, embedded once {o['embedded_s']:.1f} s "
              f"({o['pairwise_s'] / o['embedded_s']:.1f}x); largest difference {o['max_abs_diff']:.1e}, "
              f"same answers: {o['same_answers']}")
        print(f"View 2, {v['pairs']} pairs in 10 folds ({v['distinct_faces']} distinct faces, counted per fold): "
              f"pair by pair {v['pairwise_s']:.1f} s, embedded once {v['embedded_s']:.1f} s "
              f"({v['pairwise_s'] / v['embedded_s']:.1f}x); largest difference {v['max_abs_diff']:.1e}")
    if "gallery" not in args.skip:
        out["gallery"] = g = bench_gallery(net, norm, checkpoint, args.data_dir)
        print(f"gallery of {g['gallery_people']} people (one image each): embedded in {g['embed_cold_s']:.1f} s, "
              f"from the cache in {g['from_cache_s']:.1f} s; {g['queries']} queries, "
              f"{g['per_query_s'] * 1000:.0f} ms per query")
    if args.checkpoint and "rank" not in args.skip:
        out["rank"] = r = bench_rank(net, norm, args.data_dir, args.cache_dir, checkpoint)
        print(f"closed-set identification, pairsDevTest people with >= 2 images ({r['people']} people, "
              f"{r['queries']} queries): rank-1 {r['rank1']:.3f}, rank-5 {r['rank5']:.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
