"""EASE's in-place inverse (LAPACK potrf + potri, then the triangle mirrored in blocks) against the dense formula."""

import pytest
import torch

from cf_lightning.models.topn import ease


@pytest.mark.parametrize("dtype,tolerance", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_weights_equal_the_dense_inverse_and_reuse_the_gram(monkeypatch, dtype, tolerance):
    monkeypatch.setattr(ease, "MIRROR_BLOCK_ROWS", 7)  # several mirror blocks, the last one short
    generator = torch.Generator().manual_seed(0)
    interactions = (torch.rand(400, 50, generator=generator) < 0.2).to(dtype)
    gram = interactions.T @ interactions
    shifted = gram.double() + 2.5 * torch.eye(50, dtype=torch.float64)
    precision = torch.linalg.inv(shifted)
    expected = -precision / precision.diagonal()[None, :]
    expected.diagonal().zero_()
    address = gram.data_ptr()
    weights = ease.ease_weights(gram, 2.5)
    assert weights.data_ptr() == address  # no second items × items matrix
    assert weights.dtype == dtype
    torch.testing.assert_close(weights.double(), expected, rtol=tolerance, atol=tolerance)
