"""Optimizers: fastai's one-cycle recipe (AdamW + OneCycleLR) and the sparse-gradient AdamW."""
