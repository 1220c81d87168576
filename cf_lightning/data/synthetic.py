"""A MovieLens-format data set with planted structure, so everything runs offline with a known answer."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cf_lightning.data.movielens import ITEM_FIELDS, ITEMS_ENCODING, ITEMS_FILE, RATINGS_FILE
from cf_lightning.data.readers import ML100K_GENRES, NO_GENRES

PLANTED_FILE = "planted.npz"


@dataclass(frozen=True)
class Planted:
    """The true parameters the ratings were drawn from (rows = raw id - 1)."""

    user_factors: np.ndarray
    item_factors: np.ndarray
    user_bias: np.ndarray
    item_bias: np.ndarray
    global_mean: float
    cluster: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # raw item ids; may be empty

    def rating(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Noise-free rating for 1-based raw ids."""
        u, i = users - 1, items - 1
        score = (self.user_factors[u] * self.item_factors[i]).sum(1)
        return self.global_mean + self.user_bias[u] + self.item_bias[i] + score


def generate_movielens(
    dest: str | Path,
    *,
    n_users: int = 100,
    n_items: int = 200,
    n_ratings: int = 5000,
    n_factors: int = 4,
    noise: float = 0.3,
    popularity_exponent: float = 1.0,
    seed: int = 0,
    cluster_size: int = 0,
    cluster_strength: float = 1.5,
) -> Planted:
    """Write ``u.data``, ``u.item`` and ``planted.npz`` to ``dest`` and return the planted truth.

    Items are drawn with Zipf-like popularity (item 1 the most rated); each (user, item) pair
    appears at most once; ratings are the planted model plus noise, rounded and clipped to 1..5.

    ``cluster_size > 0`` plants a cluster: that many items, drawn from the more-rated half so the
    ratings can reveal them, get factors ``c + small noise`` for one shared random direction ``c`` of
    norm ``cluster_strength`` (their ids are ``Planted.cluster``). The default plants none and leaves
    the output unchanged.
    """
    if n_ratings > n_users * n_items:
        raise ValueError(f"n_ratings={n_ratings} exceeds the {n_users * n_items} possible (user, item) pairs")
    rng = np.random.default_rng(seed)
    planted = _draw_planted(rng, n_users, n_items, n_factors)
    users, items = _sample_pairs(rng, n_users, n_items, n_ratings, popularity_exponent)
    if cluster_size > 0:
        planted = _plant_cluster(rng, planted, cluster_size, cluster_strength)
    ratings = np.clip(np.rint(planted.rating(users, items) + rng.normal(0, noise, n_ratings)), 1, 5)
    # Unsorted: sorted times would follow the (user, item) order, making "latest" mean "least popular".
    timestamps = 874_724_710 + rng.integers(0, 20_000_000, n_ratings)
    order = rng.permutation(n_ratings)  # u.data is not sorted by user or time

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    rows = zip(users[order], items[order], ratings[order].astype(int), timestamps[order])
    (dest / RATINGS_FILE).write_text("".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in rows))
    _write_items(dest, n_items)
    np.savez(dest / PLANTED_FILE, **{k: np.asarray(v) for k, v in planted.__dict__.items()})
    return planted


def _draw_planted(rng, n_users: int, n_items: int, n_factors: int) -> Planted:
    return Planted(
        user_factors=rng.normal(0, 0.6, (n_users, n_factors)),
        item_factors=rng.normal(0, 0.6, (n_items, n_factors)),
        user_bias=rng.normal(0, 0.4, n_users),
        item_bias=rng.normal(0, 0.6, n_items),
        global_mean=3.5,
    )


def _write_items(dest: Path, n_items: int) -> None:
    """``u.item`` in MovieLens' layout: id, title, three empty fields, 19 genre flags."""
    empty_fields = "|" * (ITEM_FIELDS - 2 - len(ML100K_GENRES))

    def flags(item: int) -> str:
        return "|".join("1" if name in synthetic_genres(item) else "0" for name in ML100K_GENRES)

    lines = (f"{i}|{synthetic_title(i)}{empty_fields}|{flags(i)}\n" for i in range(1, n_items + 1))
    (dest / ITEMS_FILE).write_text("".join(lines), encoding=ITEMS_ENCODING)


def synthetic_genres(movie: int) -> tuple[str, ...]:
    """A generated movie's genres, from its id: one or two of ML-100K's named genres, none for every 10th."""
    named = ML100K_GENRES[1:]
    if movie % 10 == 0:
        return ()
    first, second = named[movie % len(named)], named[(movie // 4) % len(named)]
    return (first, second) if movie % 4 == 0 and second != first else (first,)


def synthetic_title(item: int) -> str:
    return f"Synthetic Movie {item} ({1950 + item % 50})"


def _plant_cluster(rng, planted: Planted, size: int, strength: float) -> Planted:
    """A copy of ``planted`` whose ``size`` items share one factor direction (they are each other's neighbours)."""
    n_items, n_factors = planted.item_factors.shape
    if not 0 < size <= n_items // 2:
        raise ValueError(f"cluster_size={size} must be in 1..n_items // 2 = {n_items // 2}")
    rows = np.sort(rng.choice(n_items // 2, size, replace=False))
    direction = rng.normal(0, 1, n_factors)
    item_factors = planted.item_factors.copy()
    # Small spread around the shared direction: close in cosine, still distinguishable.
    item_factors[rows] = strength * direction / np.linalg.norm(direction) + rng.normal(0, 0.1, (size, n_factors))
    return Planted(**(planted.__dict__ | {"item_factors": item_factors, "cluster": rows + 1}))


def load_planted(folder: str | Path) -> Planted:
    with np.load(Path(folder) / PLANTED_FILE) as arrays:
        return Planted(**{k: arrays[k] for k in arrays.files} | {"global_mean": float(arrays["global_mean"])})


def _sample_pairs(rng, n_users, n_items, n_ratings, exponent):
    """Distinct (user, item) pairs, items by power-law popularity; every user and item at least once."""
    popularity = 1.0 / np.arange(1, n_items + 1) ** exponent
    popularity /= popularity.sum()
    # Seed every user and every item with one pair so the vocabulary covers all ids.
    base = max(n_users, n_items)
    seen = set(
        zip(rng.permutation(np.resize(np.arange(n_users), base)), rng.permutation(np.resize(np.arange(n_items), base)))
    )
    while len(seen) < n_ratings:
        need = n_ratings - len(seen)
        users = rng.integers(0, n_users, 2 * need)
        items = rng.choice(n_items, 2 * need, p=popularity)
        for pair in zip(users.tolist(), items.tolist()):
            seen.add(pair)
            if len(seen) == n_ratings:
                break
    pairs = np.array(sorted(seen))[:n_ratings]
    return pairs[:, 0] + 1, pairs[:, 1] + 1


def generate_movielens_fast(
    dest: str | Path,
    *,
    n_users: int,
    n_items: int,
    n_ratings: int,
    n_factors: int = 8,
    noise: float = 0.3,
    popularity_exponent: float = 0.5,
    seed: int = 0,
    chunk_rows: int = 2_000_000,
    layout: str = "ml-100k",
) -> Planted:
    """``generate_movielens`` for tens of millions of ratings (MovieLens 25M's size in a minute).

    The same files and the same kind of planted model, every user and item rated, each pair at
    most once; but the pairs are drawn, scored and written by whole-array operations, so a seed
    gives a different set than ``generate_movielens`` does. The default popularity is milder
    (exponent 0.5): with Zipf's 1.0 the most popular items would need more distinct raters than
    there are users.

    ``layout`` other than ``ml-100k`` writes the files of that MovieLens layout instead
    (``write_layout``): the ratings then come in half stars for the layouts that have them, movie
    ids are spread over a wider range (as GroupLens' are) and the rows are sorted by user, then movie.
    """
    import pandas as pd  # only here: the small generator above must stay importable without it

    if n_ratings > n_users * n_items:
        raise ValueError(f"n_ratings={n_ratings} exceeds the {n_users * n_items} possible (user, item) pairs")
    rng = np.random.default_rng(seed)
    planted = _draw_planted(rng, n_users, n_items, n_factors)
    users, items = _sample_pairs_fast(rng, n_users, n_items, n_ratings, popularity_exponent)
    if layout != "ml-100k":
        return _generate_layout(dest, layout, rng, planted, users, items, noise)
    order = rng.permutation(n_ratings)  # u.data is not sorted by user or time
    users, items = users[order], items[order]
    timestamps = 874_724_710 + rng.integers(0, 20_000_000, n_ratings)

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    with (dest / RATINGS_FILE).open("w", newline="") as f:
        for start in range(0, n_ratings, chunk_rows):  # chunks bound the memory of the factor products
            rows = slice(start, start + chunk_rows)
            n = len(users[rows])
            ratings = np.clip(np.rint(planted.rating(users[rows], items[rows]) + rng.normal(0, noise, n)), 1, 5)
            chunk = {"user": users[rows], "movie": items[rows], "rating": ratings.astype(np.int64)}
            pd.DataFrame(chunk | {"timestamp": timestamps[rows]}).to_csv(f, sep="\t", header=False, index=False)
    _write_items(dest, n_items)
    np.savez(dest / PLANTED_FILE, **{k: np.asarray(v) for k, v in planted.__dict__.items()})
    return planted


def _sample_pairs_fast(rng, n_users, n_items, n_ratings, exponent, max_rounds: int = 30):
    """``_sample_pairs`` with arrays: draw pairs as ``user * n_items + item`` keys, deduplicate, top up."""
    cdf = np.cumsum(1.0 / np.arange(1, n_items + 1) ** exponent)
    cdf /= cdf[-1]
    base = max(n_users, n_items)  # every user and every item in at least one pair
    seeded = rng.permutation(np.resize(np.arange(n_users), base)) * n_items
    seeded = _sorted_unique(seeded + rng.permutation(np.resize(np.arange(n_items), base)))
    keys = seeded
    for _ in range(max_rounds):
        if len(keys) >= n_ratings:
            break
        draw = int(1.2 * (n_ratings - len(keys))) + 1000
        new = rng.integers(0, n_users, draw) * n_items + np.minimum(np.searchsorted(cdf, rng.random(draw)), n_items - 1)
        keys = _sorted_unique(np.concatenate([keys, new]))
    else:
        raise ValueError(
            f"could not draw {n_ratings} distinct pairs of {n_users} users and {n_items} items with "
            f"popularity_exponent={exponent}; lower the exponent or the number of ratings"
        )
    if len(keys) > n_ratings:  # keep the seeded pairs, and a random choice of the others
        others = np.setdiff1d(keys, seeded, assume_unique=True)
        keep = rng.choice(len(others), n_ratings - len(seeded), replace=False)
        keys = np.sort(np.concatenate([seeded, others[keep]]))
    return keys // n_items + 1, keys % n_items + 1


def _sorted_unique(keys: np.ndarray) -> np.ndarray:
    """``np.unique`` by sorting: numpy's hash-based unique is many times slower on tens of millions of ints."""
    keys = np.sort(keys)
    return keys[np.concatenate(([True], keys[1:] != keys[:-1]))]


def _generate_layout(dest, layout: str, rng, planted: Planted, users, items, noise: float) -> Planted:
    """The ratings of ``generate_movielens_fast`` written in another MovieLens layout (pairs stay sorted)."""
    from cf_lightning.data.layouts import LAYOUTS

    step = LAYOUTS[layout].rating_step
    n_items = len(planted.item_bias)
    # Sparse, increasing movie ids (ML-25M's 62,423 movies have ids up to 209,171).
    movie_ids = np.sort(rng.choice(np.arange(1, 4 * n_items + 1), n_items, replace=False))
    scores = planted.rating(users, items) + rng.normal(0, noise, len(users))
    ratings = np.clip(np.rint(scores / step) * step, step, 5).astype(np.float32)  # 1..5 or 0.5..5
    timestamps = 1_000_000_000 + rng.integers(0, 500_000_000, len(users))
    titles = {int(m): synthetic_title(i) for i, m in enumerate(movie_ids, start=1)}
    write_layout(dest, layout, users, movie_ids[items - 1], ratings, timestamps, titles)
    return planted


def write_layout(dest, layout: str, users, movies, ratings, timestamps, titles: dict[int, str]) -> None:
    """Write ratings and titles as GroupLens ships ``layout`` (see ``cf_lightning.data.layouts``).

    ``dat``: ``ratings.dat`` ``user::movie::rating::timestamp`` and ``movies.dat`` ``id::title::genres``
    in Latin-1 (ML-1M also has ``users.dat``); ``csv``: ``ratings.csv`` and ``movies.csv`` with a header,
    titles quoted where they hold a comma or a quote, UTF-8. Ratings print as GroupLens prints them:
    ``4`` and ``3.5`` in ``.dat``, ``4.0`` and ``3.5`` in ``.csv``.
    """
    import csv

    import pandas as pd

    from cf_lightning.data.layouts import LAYOUTS

    spec = LAYOUTS[layout]
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame({"user": users, "movie": movies, "rating": np.asarray(ratings, dtype=np.float64)})
    frame["timestamp"] = timestamps

    def genres(movie: int) -> str:
        return "|".join(synthetic_genres(int(movie))) or NO_GENRES

    if spec.separator == "::":
        whole = frame["rating"] == np.floor(frame["rating"])
        text = np.where(whole, frame["rating"].astype(np.int64).astype(str), frame["rating"].astype(str))
        lines = frame["user"].astype(str) + "::" + frame["movie"].astype(str) + "::" + text
        (dest / spec.ratings_file).write_text("\n".join(lines + "::" + frame["timestamp"].astype(str)) + "\n")
        movie_lines = "".join(f"{m}::{t}::{genres(m)}\n" for m, t in sorted(titles.items()))
        (dest / spec.items_file).write_bytes(movie_lines.encode(spec.items_encoding))
        if layout == "ml-1m":
            user_lines = "".join(f"{u}::M::25::0::12345\n" for u in np.unique(users))
            (dest / "users.dat").write_text(user_lines)
        return
    with (dest / spec.ratings_file).open("w", newline="") as f:
        f.write(",".join(spec.ratings_header) + "\n")
        for start in range(0, len(frame), 2_000_000):
            frame.iloc[start : start + 2_000_000].to_csv(f, header=False, index=False, float_format="%.1f")
    with (dest / spec.items_file).open("w", newline="", encoding=spec.items_encoding) as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(spec.items_header)
        writer.writerows((m, t, genres(m)) for m, t in sorted(titles.items()))
