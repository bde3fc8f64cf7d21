"""Training pairs drawn afresh every epoch from the identities of the training
people: LFW's *unrestricted* protocol.

The image-restricted protocol trains on the listed pairs of pairsDevTrain only
(1,760 after the validation split).  Its 2,132 people have 6,685 images in
LFW-a, and knowing who is in each image allows far more pairs: 945 people have
two or more images.  A pool holds every image of the training people; each
epoch draws a new balanced set of pairs from it:

- a same-person pair picks a person uniformly among those with >= 2 images,
  then two different images of theirs (uniformly), so the few people with
  hundreds of images (George_W_Bush has 530) do not dominate;
- a different-person pair picks two different people uniformly, then one image
  of each.

Validation must not share people with such training: the trainer
(:meth:`minisiamese.train.Trainer.load_data`) builds the pool from the people of
the training file less everyone who appears in a validation pair.

The same pool is the source of Omniglot's pairs (:mod:`minisiamese.omniglot`),
its classes the characters and ``groups`` their alphabets: then half the
different-class pairs are drawn within one alphabet (two characters of it) and
half across, as above (two characters uniformly, almost always of two alphabets).
"""
import numpy as np

from .data import PairSet, load_images, person_images
from .errors import DataError


class IdentityPool:
    """Images with their identities, drawing balanced pairs.

    images (U, S, S) uint8; person (U,) int, the person index of each image;
    keys [(name, num)] of each image.  ``groups`` (optional) maps each name to
    its group (an Omniglot character to its alphabet): ``group`` (P,) int is
    then each person's group index, and different-person pairs are drawn half
    within a group.
    """

    def __init__(self, images, keys, groups=None):
        self.images, self.keys = images, keys
        names = sorted({k[0] for k in keys})
        index = {name: i for i, name in enumerate(names)}
        self.person = np.array([index[k[0]] for k in keys], dtype=np.int64)           # (U,)
        order = np.argsort(self.person, kind="stable")
        counts = np.bincount(self.person, minlength=len(names))
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        self.names, self.order, self.counts, self.starts = names, order, counts, starts
        self.multi = np.flatnonzero(counts >= 2)                                      # people with a positive pair
        if len(names) < 2 or len(self.multi) == 0:
            raise DataError(f"drawing pairs from identities needs at least two people and one person with two "
                            f"images; the training people have {len(names)} people, {len(self.multi)} with two "
                            f"or more images")
        self.group = None
        if groups is not None:
            group_names = sorted({groups[name] for name in names})
            self.group = np.array([group_names.index(groups[name]) for name in names], dtype=np.int64)   # (P,)
            self.group_names = group_names
            self.group_order = np.argsort(self.group, kind="stable")            # people, group by group
            self.group_counts = np.bincount(self.group, minlength=len(group_names))
            self.group_starts = np.concatenate([[0], np.cumsum(self.group_counts)[:-1]])
            self.rank = np.empty(len(names), dtype=np.int64)                    # place of a person in its group
            self.rank[self.group_order] = np.arange(len(names)) - self.group_starts[self.group[self.group_order]]
            self.group_multi = np.flatnonzero(self.group_counts[self.group] >= 2)   # people with a group-mate

    @classmethod
    def load(cls, data_dir, people, cache_dir=None, size=105, crop=1.0):
        keys = person_images(data_dir, people, size, crop)
        return cls(load_images(data_dir, keys, cache_dir, size, crop=crop), keys)

    def _image(self, person, k):
        """Row in ``images`` of the k-th image (k < counts[person]) of each person."""
        return self.order[self.starts[person] + k]

    def draw(self, n, rng):
        """A PairSet of n new pairs (n // 2 same-person first, then different-person;
        with groups, the first half of those within a group)."""
        n_pos = n // 2
        n_neg = n - n_pos
        who = self.multi[rng.integers(len(self.multi), size=n_pos)]                   # (n_pos,)
        c = self.counts[who]
        a = rng.integers(c)
        b = (a + 1 + rng.integers(c - 1)) % c                                         # another image, uniformly
        n_within = n_neg // 2 if self.group is not None and len(self.group_multi) else 0
        w1, w2 = self._group_mates(n_within, rng)
        p1 = rng.integers(len(self.names), size=n_neg - n_within)
        p2 = (p1 + 1 + rng.integers(len(self.names) - 1, size=n_neg - n_within)) % len(self.names)
        p1, p2 = np.concatenate([w1, p1]), np.concatenate([w2, p2])
        idx1 = np.concatenate([self._image(who, a), self._image(p1, rng.integers(self.counts[p1]))])
        idx2 = np.concatenate([self._image(who, b), self._image(p2, rng.integers(self.counts[p2]))])
        labels = np.concatenate([np.ones(n_pos), np.zeros(n_neg)]).astype(np.float32)
        return PairSet(self.images, idx1, idx2, labels, keys=self.keys)

    def _group_mates(self, n, rng):
        """(p1, p2): n pairs of different people of one group, p1 uniform among
        those with a group-mate and p2 uniform among its group-mates."""
        if n == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        p1 = self.group_multi[rng.integers(len(self.group_multi), size=n)]
        g = self.group[p1]
        c = self.group_counts[g]
        k = (self.rank[p1] + 1 + rng.integers(c - 1)) % c
        return p1, self.group_order[self.group_starts[g] + k]
