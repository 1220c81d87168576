"""Evaluation passes that encode every row once (the autoencoders: AutoRec, kernel AE, Mult-VAE/DAE)."""

from __future__ import annotations

import torch


class EncodesOncePerPass:
    """An evaluation pass (validation, test, predict) encodes every row once, at its start, into ``_codes``
    (the subclass's ``_encode_all``): its batches of pairs then only decode, instead of re-encoding the rows
    they hold batch after batch. The codes are dropped at the pass's end, so training never reads stale ones.

    Put it before ``CollabModel`` in the bases, so the hooks chain to Lightning's through ``super()``.
    """

    _codes: torch.Tensor | None = None

    def _encode_all(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} must define _encode_all (fill self._codes)")

    def _forget_codes(self) -> None:
        self._codes = None

    def on_validation_epoch_start(self) -> None:
        self._encode_all()

    def on_validation_epoch_end(self) -> None:
        self._forget_codes()
        super().on_validation_epoch_end()

    def on_test_epoch_start(self) -> None:
        self._encode_all()

    def on_test_epoch_end(self) -> None:
        self._forget_codes()
        super().on_test_epoch_end()

    def on_predict_epoch_start(self) -> None:
        self._encode_all()

    def on_predict_epoch_end(self) -> None:
        self._forget_codes()
