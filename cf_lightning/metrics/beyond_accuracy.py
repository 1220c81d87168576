"""What a model recommends beyond accuracy, computed on the same top-K lists as NDCG and Recall.

Notation: ``L_u`` the top-K list of user ``u`` (its valid slots), ``U`` the evaluated users, ``I``
the catalogue (every item that can be recommended; ``#na#`` is not one), ``phi(i)`` the number of
training interactions of item ``i`` and ``N`` the number of training users.

- Catalog coverage@K = |union of L_u| / |I|.
- Gini index of item exposure: with ``x_1 <= ... <= x_n`` the times each catalogue item appears in
  the lists (zeros included), ``G = sum_j (2j - n - 1) x_j / (n sum_j x_j)``: 0 when every item is
  shown equally often, towards 1 when a few items take every slot.
- Average recommendation popularity (``arp``) ARP = mean_u mean_{i in L_u} phi(i); the users' own profiles'
  popularity APP = mean_u mean_{i in P_u} phi(i) over their training items ``P_u``; popularity lift
  = (ARP - APP) / APP (Abdollahpouri et al. 2020): > 0 when the lists are more popular than the
  users' own tastes.
- Novelty = mean_u mean_{i in L_u} -log2(p_i), ``p_i = max(phi(i), 1) / N``: the self-information
  of an item (Zhou et al. 2010); an item never seen in training counts as seen once.
- Intra-list diversity by genres (``ild``) ILD = mean_u mean_{i != j in L_u} (1 - cos(g_i, g_j)), ``g_i`` the
  item's 0/1 genre vector; an item without genres is at distance 1 from every other. Lists of
  fewer than two items have no pairs and are left out of the mean.

Per-user values (ARP, novelty, ILD: the inner means) are kept as well, for the paired comparisons.
Definitions with their sources: docs/metrics.md.
"""

from __future__ import annotations

import math

import torch

# Logged at test as test/{name}@{K}; arp, novelty and ild are also per-user values (test_per_user.parquet).
BEYOND_ACCURACY_METRICS = ("coverage", "gini", "arp", "popularity_lift", "novelty", "ild")
PER_USER_BEYOND_ACCURACY = ("arp", "novelty", "ild")
ILD_PAIRS = 1 << 20  # item pairs whose genre similarity is held at once (8 MB of float64)


def exposure_counts(lists: torch.Tensor, valid: torch.Tensor, n_items: int) -> torch.Tensor:
    """How many times each item row appears in the valid slots of the top-K lists."""
    return torch.bincount(lists[valid].long(), minlength=n_items)


def catalog_coverage(exposure: torch.Tensor, catalog: torch.Tensor) -> float:
    """Share of the catalogue's items (``catalog``: their rows) recommended to at least one user."""
    return float((exposure[catalog] > 0).double().mean())


def gini_index(exposure: torch.Tensor, catalog: torch.Tensor) -> float:
    """Gini index of the catalogue items' exposure (0: equal exposure; towards 1: concentrated)."""
    x = exposure[catalog].double().sort().values
    n, total = len(x), float(x.sum())
    if n == 0 or total == 0:
        return 0.0
    ranks = torch.arange(1, n + 1, dtype=torch.float64)
    return float(((2 * ranks - n - 1) * x).sum() / (n * total))


def _prefix_means(table: torch.Tensor, lists: torch.Tensor, valid: torch.Tensor, ks) -> list[torch.Tensor]:
    """For each K of ``ks``: each list's mean of ``table[item]`` (items x columns) over its first K valid slots,
    ``(users, columns)``, nan for an empty list. One gather and one running sum give every K."""
    taken = (table[lists.long()] * valid.unsqueeze(-1)).cumsum(1)  # (users, slots, columns)
    filled = valid.cumsum(1).unsqueeze(-1)
    last = [min(k, lists.shape[1]) - 1 for k in ks]
    return list((taken[:, last] / filled[:, last]).unbind(1))


def self_information(item_counts: torch.Tensor, n_train_users: int) -> torch.Tensor:
    """Each item's ``-log2(max(phi, 1) / N)``: its self-information (Zhou et al. 2010)."""
    return -torch.log2(item_counts.double().clamp(min=1) / n_train_users)


def popularity(lists: torch.Tensor, valid: torch.Tensor, item_counts: torch.Tensor) -> torch.Tensor:
    """Per user: the mean training-interaction count of the recommended items."""
    return _prefix_means(item_counts.double().unsqueeze(1), lists, valid, [lists.shape[1]])[0][:, 0]


def profile_popularity(users: torch.Tensor, items: torch.Tensor, item_counts: torch.Tensor, n_users: int):
    """Per user row: the mean training-interaction count of the user's own training items (nan if none)."""
    sums = torch.zeros(n_users, dtype=torch.float64).index_add_(0, users, item_counts[items].double())
    counts = torch.bincount(users, minlength=n_users).double()
    return sums / counts


def novelty(lists: torch.Tensor, valid: torch.Tensor, item_counts: torch.Tensor, n_train_users: int):
    """Per user: the mean self-information ``-log2(max(phi, 1) / N)`` of the recommended items."""
    information = self_information(item_counts, n_train_users).unsqueeze(1)
    return _prefix_means(information, lists, valid, [lists.shape[1]])[0][:, 0]


def intra_list_diversity(lists: torch.Tensor, valid: torch.Tensor, genres: torch.Tensor) -> torch.Tensor:
    """Per user: the mean genre distance ``1 - cos`` over the pairs of recommended items (nan below two items)."""
    vectors = genres[lists.long()].double() * valid.unsqueeze(-1)  # (users, K, genres)
    norms = vectors.norm(dim=-1, keepdim=True)
    unit = torch.where(norms > 0, vectors / norms.clamp(min=1e-300), torch.zeros_like(vectors))
    similarity = unit @ unit.transpose(1, 2)  # (users, K, K); an item without genres has similarity 0
    pair = valid.unsqueeze(2) & valid.unsqueeze(1)
    pair &= ~torch.eye(lists.shape[1], dtype=torch.bool, device=lists.device)
    n_pairs = pair.sum((1, 2)).double()
    distance = ((1 - similarity) * pair).sum((1, 2))
    return torch.where(n_pairs > 0, distance / n_pairs.clamp(min=1), torch.full_like(distance, math.nan))


class ListStatistics:
    """The metrics of the module's docstring for top-K lists streamed a block of users at a time, at each K.

    ``add`` takes a block's top-max(K) lists and returns its per-user values (``arp@K``, ``novelty@K``,
    ``ild@K``; ild only with ``genres``, items x genres 0/1); ``exposure`` holds each K's exposure counts
    summed over the blocks (add the ranks' before ``set_metrics``). ``item_counts`` is phi, each item row's
    training interactions; ``catalog`` the rows that can be recommended.
    """

    def __init__(
        self,
        ks: tuple[int, ...],
        *,
        item_counts: torch.Tensor,
        n_train_users: int,
        catalog: torch.Tensor,
        genres: torch.Tensor | None = None,
    ) -> None:
        self.ks, self.item_counts, self.n_train_users = ks, item_counts, n_train_users
        self.catalog, self.genres = catalog, genres
        # Per item: its popularity and self-information, gathered together for every block's lists (computed
        # once: a log over the catalogue per block cost more than the block's own arithmetic on 2 busy cores).
        self.table = torch.stack([item_counts.double(), self_information(item_counts, n_train_users)], 1)
        # Times each item was listed at each rank (rank x items): exposure@K is the sum of the first K ranks.
        self.by_rank = torch.zeros(max(ks), len(item_counts), dtype=torch.long)
        # The per-user metrics, in PER_USER_BEYOND_ACCURACY's order; diversity only where genres exist.
        self.per_user_names = tuple(name for name in PER_USER_BEYOND_ACCURACY if name != "ild" or genres is not None)

    @property
    def exposure(self) -> torch.Tensor:
        """``(len(ks), items)``: how many times each item was listed in the top K, at each K."""
        return self.by_rank.cumsum(0)[[k - 1 for k in self.ks]].double()

    def add(self, lists: torch.Tensor, valid: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-user values of one block's lists (best first, at least max(K) slots or the whole catalogue)."""
        depth = min(max(self.ks), lists.shape[1])
        lists, valid = lists[:, :depth], valid[:, :depth]
        n_items = len(self.item_counts)
        slots = (torch.arange(depth) * n_items + lists)[valid]  # rank * items + item of each listed item
        self.by_rank.view(-1).index_put_((slots,), torch.ones_like(slots), accumulate=True)
        values = {}
        for k, means in zip(self.ks, _prefix_means(self.table, lists, valid, self.ks), strict=True):
            values[f"arp@{k}"], values[f"novelty@{k}"] = means[:, 0], means[:, 1]
            if self.genres is not None:
                # A chunk of users at a time: the pairwise similarities are users x K x K.
                top, filled = lists[:, :k], valid[:, :k]
                chunk = max(1, ILD_PAIRS // (k * k))
                values[f"ild@{k}"] = torch.cat(
                    [
                        intra_list_diversity(top[start : start + chunk], filled[start : start + chunk], self.genres)
                        for start in range(0, len(top), chunk)
                    ]
                )
        return values

    def set_metrics(self, exposure: torch.Tensor, arp: dict[int, float], profile: float) -> dict[str, float]:
        """``coverage@K``, ``gini@K`` and ``popularity_lift@K`` of the whole set of lists, from the summed
        ``exposure``, each K's mean ``arp`` and the evaluated users' mean profile popularity (APP)."""
        metrics = {}
        for row, k in enumerate(self.ks):
            metrics[f"coverage@{k}"] = catalog_coverage(exposure[row], self.catalog)
            metrics[f"gini@{k}"] = gini_index(exposure[row], self.catalog)
            metrics[f"popularity_lift@{k}"] = (arp[k] - profile) / profile if profile > 0 else math.nan
        return metrics
