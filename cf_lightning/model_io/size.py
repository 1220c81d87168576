"""A rough size of a model before it is built, against the memory this machine has free.

``model.n_factors=1000000000`` used to end in torch's ``RuntimeError: can't allocate memory`` after the
data was read; a checkpoint whose hyperparameters ask for 200 GB used to try. The model is first built
on torch's ``meta`` device (shapes only, no memory), its size estimated by ``estimate_model_bytes``,
and refused with one error naming its largest tables when it cannot fit.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from cf_lightning.errors import CFLightningError

BYTES_PER_VALUE = 4  # float32 parameters and buffers
# Training keeps, per parameter, its gradient and AdamW's two moving averages (exp_avg, exp_avg_sq).
TRAINING_COPIES = 3
GIB = 1024**3

M = TypeVar("M")


class ModelTooLargeError(CFLightningError, MemoryError):
    """The model's estimated size exceeds the memory available; the message names its largest tables."""


def estimate_model_bytes(model, training: bool) -> int:
    """Parameters and buffers × 4 bytes, plus (``training``) a gradient and two optimizer moments per parameter."""
    parameters = sum(p.numel() for p in model.parameters())
    buffers = sum(b.numel() for b in model.buffers())
    return BYTES_PER_VALUE * (parameters * (1 + (TRAINING_COPIES if training else 0)) + buffers)


def available_memory_bytes() -> int | None:
    """Memory free for this process: MemAvailable, or the cgroup's remaining limit if smaller; None if unknown."""
    values = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                values.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    try:  # a container's limit (cgroup v2) can be far below the machine's
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            values.append(int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text()))
    except (OSError, ValueError):
        pass
    return min(values) if values else None


def require_model_fits(model, *, training: bool, what: str, error: type[CFLightningError] = ModelTooLargeError) -> None:
    """Raise ``error`` naming ``what`` and the largest tables when ``model`` (on any device, meta too) cannot fit."""
    need = estimate_model_bytes(model, training)
    free = available_memory_bytes()
    if free is None or need <= free:
        return
    largest = sorted(model.state_dict().items(), key=lambda item: -item[1].numel())[:2]
    tables = ", ".join(f"{name} {tuple(tensor.shape)}" for name, tensor in largest)
    extra = " plus a gradient and two optimizer moments each" if training else ""
    raise error(
        f"{what}: the model needs about {need / GIB:.1f} GiB (its parameters × 4 bytes{extra}; largest: {tables}), "
        f"and {free / GIB:.1f} GiB of memory is free; choose smaller sizes (n_factors, layers) or a machine "
        "with more memory"
    )


def build_within_memory(builder: Callable[..., M], *args, **kwargs) -> M:
    """``builder(*args, **kwargs)``, after the same call on the ``meta`` device showed that its model fits.

    ``args[0]``, when it is a model config (typed, or a dict with ``name``), names the model in the error."""
    import torch

    config = args[0] if args else None
    name = config.get("name") if isinstance(config, dict) else getattr(config, "name", None)
    what = f"model={name}" if name else "the model"
    with torch.device("meta"):
        shapes_only = builder(*args, **kwargs)
    require_model_fits(shapes_only, training=True, what=what, error=ModelTooLargeError)
    del shapes_only
    return builder(*args, **kwargs)
