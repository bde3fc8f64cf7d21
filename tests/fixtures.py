"""A small LFW-like data set made on the fly: a few 'people' whose faces are
distinct noise patterns, saved as 250x250 JPEGs in the published layout."""
import json
import os

import numpy as np

TINY_MODEL = {"input_size": 24, "conv_filters": [4, 8], "conv_kernels": [5, 3], "dense_units": 16}


def make_dataset(root, people=8, per_person=4, pairs_per_class=8, seed=0, colour_person=None):
    from PIL import Image
    rng = np.random.default_rng(seed)
    names = [f"Person_{chr(65 + i)}{chr(97 + i)}" for i in range(people)]
    os.makedirs(os.path.join(root, "lfw2"), exist_ok=True)
    for i, name in enumerate(names):
        d = os.path.join(root, "lfw2", name)
        os.makedirs(d, exist_ok=True)
        base = rng.random((25, 25))
        for k in range(1, per_person + 1):
            img = np.kron(base, np.ones((10, 10))) * 200 + rng.random((250, 250)) * 55
            arr = img.astype(np.uint8)
            if name == colour_person:
                Image.fromarray(np.stack([arr] * 3, -1), "RGB").resize((180, 200)).save(
                    os.path.join(d, f"{name}_{k:04d}.jpg"))
            else:
                Image.fromarray(arr, "L").save(os.path.join(d, f"{name}_{k:04d}.jpg"))
    half = people // 2

    def pairs_file(path, group):
        pos, neg = {}, {}              # the two images (either order) -> line: no pair is listed twice

        def same():
            n = group[rng.integers(len(group))]
            a, b = rng.choice(np.arange(1, per_person + 1), 2, replace=False)
            pos.setdefault(frozenset([(n, a), (n, b)]), f"{n}\t{a}\t{b}")

        def different():
            n1, n2 = rng.choice(group, 2, replace=False)
            a, b = rng.integers(1, per_person + 1), rng.integers(1, per_person + 1)
            neg.setdefault(frozenset([(n1, a), (n2, b)]), f"{n1}\t{a}\t{n2}\t{b}")

        for _ in range(pairs_per_class):
            same()
            different()
        while len(pos) < pairs_per_class:          # a repeat is drawn again, at the end of its block
            same()
        while len(neg) < pairs_per_class:
            different()
        with open(path, "w") as f:
            f.write("\n".join([str(pairs_per_class)] + list(pos.values()) + list(neg.values())) + "\n")

    pairs_file(os.path.join(root, "pairsDevTrain.txt"), names[:half])
    pairs_file(os.path.join(root, "pairsDevTest.txt"), names[half:])
    return names


def tiny_config(path, epochs=3, **train):
    cfg = {"model": TINY_MODEL, "train": dict({"epochs": epochs, "batch_size": 4, "lr": 1e-3, "patience": 5,
                                                "oneshot_way": 3}, **train)}
    with open(path, "w") as f:
        json.dump(cfg, f)
    return path
