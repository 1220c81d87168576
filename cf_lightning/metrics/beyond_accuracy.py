"""What a model recommends beyond accuracy, computed on the same top-K lists as NDCG and Recall.

Notation: ``L_u`` the top-K list of user ``u`` (its valid slots), ``U`` the evaluated users, ``I``
the catalogue (every item that can be recommended; ``#na#`` is not one), ``phi(i)`` the number of
training interactions of item ``i`` and ``N`` the number of training users.

- Catalog coverage@K = |union of L_u| / |I|.
- Gini index of item exposure: with ``x_1 <= ... <= x_n`` the times each catalogue item appears in
  the lists (zeros included), ``G = sum_j (2j - n - 1) x_j / (n sum_j x_j)``: 0 when every item is
  shown equally often, towards 1 when a few items take every slot.
- Average recommendation popularity ARP = mean_u mean_{i in L_u} phi(i); the users' own profiles'
  popularity APP = mean_u mean_{i in P_u} phi(i) over their training items ``P_u``; popularity lift
  = (ARP - APP) / APP (Abdollahpouri et al. 2020): > 0 when the lists are more popular than the
  users' own tastes.
- Novelty = mean_u mean_{i in L_u} -log2(p_i), ``p_i = max(phi(i), 1) / N``: the self-information
  of an item (Zhou et al. 2010); an item never seen in training counts as seen once.
- Intra-list diversity by genres ILD = mean_u mean_{i != j in L_u} (1 - cos(g_i, g_j)), ``g_i`` the
  item's 0/1 genre vector; an item without genres is at distance 1 from every other. Lists of
  fewer than two items have no pairs and are left out of the mean.

Per-user values (popularity, novelty, diversity) are returned as well, for the paired comparisons.
"""

from __future__ import annotations

import math

import torch

BEYOND_ACCURACY_METRICS = ("coverage", "gini", "popularity", "popularity_lift", "novelty", "diversity")


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


def _per_list_mean(values: torch.Tensor, lists: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Each list's mean of ``values[item]`` over its valid slots (nan for an empty list)."""
    taken = values[lists.long()].double() * valid
    return taken.sum(1) / valid.sum(1)


def popularity(lists: torch.Tensor, valid: torch.Tensor, item_counts: torch.Tensor) -> torch.Tensor:
    """Per user: the mean training-interaction count of the recommended items."""
    return _per_list_mean(item_counts, lists, valid)


def profile_popularity(users: torch.Tensor, items: torch.Tensor, item_counts: torch.Tensor, n_users: int):
    """Per user row: the mean training-interaction count of the user's own training items (nan if none)."""
    sums = torch.zeros(n_users, dtype=torch.float64).index_add_(0, users, item_counts[items].double())
    counts = torch.bincount(users, minlength=n_users).double()
    return sums / counts


def novelty(lists: torch.Tensor, valid: torch.Tensor, item_counts: torch.Tensor, n_train_users: int):
    """Per user: the mean self-information ``-log2(max(phi, 1) / N)`` of the recommended items."""
    information = -torch.log2(item_counts.double().clamp(min=1) / n_train_users)
    return _per_list_mean(information, lists, valid)


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


def beyond_accuracy(
    lists: torch.Tensor,
    valid: torch.Tensor,
    *,
    catalog: torch.Tensor,
    item_counts: torch.Tensor,
    n_train_users: int,
    profile: torch.Tensor,
    genres: torch.Tensor | None = None,
) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    """The metrics of the module's docstring for top-K ``lists`` (users x K item rows) and their ``valid`` slots.

    ``profile`` is each listed user's own profile popularity (``profile_popularity`` at their rows).
    Returns ``(means, per_user)``; ``diversity`` only when ``genres`` (items x genres, 0/1) is given.
    """
    exposure = exposure_counts(lists, valid, len(item_counts))
    per_user = {
        "popularity": popularity(lists, valid, item_counts),
        "novelty": novelty(lists, valid, item_counts, n_train_users),
    }
    if genres is not None:
        per_user["diversity"] = intra_list_diversity(lists, valid, genres)
    means = {name: float(values.nanmean()) for name, values in per_user.items()}
    own = float(profile.double().nanmean())
    means["popularity_lift"] = (means["popularity"] - own) / own if own > 0 else math.nan
    means["coverage"] = catalog_coverage(exposure, catalog)
    means["gini"] = gini_index(exposure, catalog)
    return means, per_user
