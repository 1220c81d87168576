"""Nothing allocates users x items: the rating models fit and predict on a set of 2,000,000 users x 5,000
items (a dense float32 table would be 40 GB) with a few thousand ratings, in a process whose address
space is capped far below that."""

import subprocess
import sys
import textwrap

import pytest

N_USERS, N_ITEMS, N_RATINGS = 2_000_000, 5_000, 3_000
ADDRESS_SPACE = 6 << 30  # torch's libraries and threads reserve ~2 GB; a dense table needs 40 GB

SETUP = f"""
import resource
resource.setrlimit(resource.RLIMIT_AS, ({ADDRESS_SPACE}, {ADDRESS_SPACE}))
import torch
torch.set_num_threads(1)
g = torch.Generator().manual_seed(0)
users = torch.randint(0, {N_USERS}, ({N_RATINGS},), generator=g)
items = torch.randint(0, {N_ITEMS}, ({N_RATINGS},), generator=g)
ratings = torch.randint(1, 6, ({N_RATINGS},), generator=g).float()
ask_users = torch.randint(0, {N_USERS}, (1000,), generator=g)
ask_items = torch.randint(0, {N_ITEMS}, (1000,), generator=g)
"""

BAYESIAN_MF = """
from cf_lightning.models.rating.bayesian_mf import BayesianMF
model = BayesianMF({n_users}, {n_items}, n_factors=2, implicit_users=True, implicit_items=True, burn_in=1,
                   sweeps_per_epoch=1, init_std=0.1, noise_precision=None, bias_precision=None, clip=[1, 5], seed=0)
model.fit_statistics(users, items, ratings)
for _ in range(3):
    model.sweep()
predicted = model(ask_users, ask_items)
assert int(model.kept) == 2 and torch.isfinite(predicted).all()
print("ok", float(predicted.mean()))
"""

AUTOREC = """
from cf_lightning.data.rating_matrix import ItemRows, RatingMatrix
from cf_lightning.models.rating.autoencoder import AutoRec
model = AutoRec({n_users}, {n_items}, hidden=4, l2=1.0, clip=[1, 5])
matrix = RatingMatrix.from_triples(users, items, ratings, {n_users}, {n_items})
model.training_matrix.set(matrix)
model.cold_start.fit(users, items, ratings)
optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
rows = ItemRows(matrix, matrix.rated_items())
for start in range(0, len(rows), 512):  # one epoch: batches of 512 item rows (4 GB if dense)
    batch = rows[torch.arange(start, min(start + 512, len(rows)))]
    loss = model.batch_loss(*batch)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
predicted = model(ask_users, ask_items)
assert torch.isfinite(predicted).all() and torch.isfinite(loss)
print("ok", float(predicted.mean()))
"""


@pytest.mark.parametrize("script", [BAYESIAN_MF, AUTOREC], ids=["bayesian_mf", "autorec"])
def test_a_set_whose_dense_table_cannot_fit_trains_and_predicts(script):
    code = SETUP + textwrap.dedent(script).format(n_users=N_USERS, n_items=N_ITEMS)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("ok")
