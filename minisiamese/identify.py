"""One-shot identification: who, of a gallery of people, is in a query photo?

The gallery is a folder in LFW's layout -- one subfolder per person holding
one or more images -- or a flat folder with one image per person, named after
the person (``Ada_Lovelace.jpg``).  Each gallery image is embedded once by the
tower; a query is embedded and scored against every gallery embedding by the
head (the same computation as an N-way one-shot task, with N the gallery's
size).  A person's score is the best over their images.  Embeddings are cached
per checkpoint in ``gallery-<checkpoint digest>.npz``, keyed by each image's
content hash, so a second query -- or a gallery with a few new people --
embeds only what it has not seen.
"""
import os

import numpy as np

from .backend import to_numpy
from .data import file_digest, load_faces, load_image
from .errors import CheckpointError, DataError
from .fileio import load_arrays, save_arrays
from .plots import pyplot, save_figure

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".pgm", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def _is_image(name):
    return name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")


def scan_gallery(folder):
    """[(person, image path)], sorted: subfolders are people, or each image in the
    folder is one person named after its file."""
    if not os.path.isdir(folder):
        raise DataError(f"{folder}: " + ("not a folder; the gallery is a folder of people's images"
                                         if os.path.exists(folder) else "gallery folder not found"))
    entries = []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if os.path.isdir(path):
            entries += [(name, os.path.join(path, f)) for f in sorted(os.listdir(path)) if _is_image(f)]
        elif _is_image(name):
            entries.append((os.path.splitext(name)[0], path))
    if not entries:
        raise DataError(f"{folder}: the gallery has no images (expected one subfolder of images per person, "
                        f"or one image per person named after them; extensions {', '.join(IMAGE_EXTENSIONS)})")
    return entries


class Gallery:
    """Embeddings of a gallery for one model.

    people (M,) names, one per gallery image; paths (M,); h (M, U) on the
    model's backend; ``embedded``: how many images were embedded now (the rest
    came from the cache)."""

    def __init__(self, net, normalizer, folder, checkpoint, cache_dir=None, batch_size=128):
        entries = scan_gallery(folder)
        self.people = np.array([p for p, _ in entries])
        self.paths = [path for _, path in entries]
        self.net = net
        digests = [file_digest(path, "gallery image") for path in self.paths]
        cache = self._cache_path(checkpoint, cache_dir)
        known = self._read_cache(cache, net.config.dense_units)
        missing = sorted({d for d in digests if d not in known})
        if missing:
            first = {d: path for d, path in zip(digests, self.paths)}
            for i in range(0, len(missing), batch_size):
                chunk = missing[i:i + batch_size]
                h = to_numpy(net.embed(normalizer(load_faces([first[d] for d in chunk], net.config)), batch_size))
                known.update(zip(chunk, h))
            if cache:
                self._write_cache(cache, known)
        self.embedded = len(missing)
        self.h = net.xp.asarray(np.stack([known[d] for d in digests]))

    @staticmethod
    def _cache_path(checkpoint, cache_dir):
        if not cache_dir:
            return None
        return os.path.join(cache_dir, f"gallery-{file_digest(checkpoint, 'checkpoint', kind='model file')[:24]}.npz")

    @staticmethod
    def _read_cache(path, units):
        if not path or not os.path.isfile(path):
            return {}
        try:
            a = load_arrays(path)
        except CheckpointError:
            return {}                                      # damaged: rebuilt on write
        h, keys = a.get("h"), a.get("digests")
        if h is None or keys is None or h.ndim != 2 or h.shape != (len(keys), units):
            return {}
        return dict(zip((str(k) for k in keys), h))

    @staticmethod
    def _write_cache(path, known):
        keys = sorted(known)
        save_arrays(path, {"digests": np.array(keys), "h": np.stack([known[k] for k in keys])})

    def rank(self, hq):
        """For one query embedding hq (U,): [(person, probability)] of every person,
        best first (a person's probability is the best of their images)."""
        p = self.net.score(self.net.xp.broadcast_to(hq, self.h.shape), self.h)
        best = {}
        for person, prob in zip(self.people, p):
            if prob > best.get(person, -1.0):
                best[person] = float(prob)
        return sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))


def verify_pair(net, normalizer, path1, path2, threshold=0.5):
    """Whether two face images show the same person: {"p": probability,
    "same": p >= threshold, "threshold"}."""
    x1, x2 = load_faces([path1], net.config), load_faces([path2], net.config)
    p = float(net.predict_proba(normalizer(x1), normalizer(x2))[0])
    return {"p": p, "same": p >= threshold, "threshold": threshold}


def identify(net, normalizer, gallery, queries, top=5, threshold=0.5, batch_size=128):
    """For each query image path: {"query", "top": [(person, p)] (top-K),
    "answer": the best person, or None ("unknown") when their p < threshold}."""
    out = []
    for i in range(0, len(queries), batch_size):
        chunk = queries[i:i + batch_size]
        hq = net.embed(normalizer(load_faces(chunk, net.config)), batch_size)
        for q, h in zip(chunk, hq):
            ranked = gallery.rank(h)
            best, p = ranked[0]
            out.append({"query": q, "top": ranked[:top], "answer": best if p >= threshold else None,
                        "threshold": threshold})
    return out


def plot_identification(results, gallery, path, config):
    """Each query beside its top-K people (each shown by their first gallery
    image), as the model with ModelConfig ``config`` sees them."""
    plt = pyplot()
    k = max(len(r["top"]) for r in results)
    fig, axes = plt.subplots(len(results), k + 1, figsize=(1.6 * (k + 1), 1.9 * len(results)), squeeze=False)
    first_image = {}
    for person, p in zip(gallery.people, gallery.paths):
        first_image.setdefault(person, p)
    for row, r in zip(axes, results):
        row[0].imshow(load_image(r["query"], config.input_size, config.crop), cmap="gray", vmin=0, vmax=255)
        answer = r["answer"] if r["answer"] is not None else "unknown"
        row[0].set_title(f"{os.path.basename(r['query'])[:24]}\nanswer: {answer[:18]}", fontsize=7)
        for k, (ax, (person, p)) in enumerate(zip(row[1:], r["top"]), 1):
            ax.imshow(load_image(first_image[person], config.input_size, config.crop), cmap="gray", vmin=0, vmax=255)
            ax.set_title(f"{k}. {person[:18]}\n{p:.3f}", fontsize=7)
        for ax in row:
            ax.axis("off")
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
