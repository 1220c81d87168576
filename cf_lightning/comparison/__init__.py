"""Comparing models with confidence: per-user results, intervals, paired tests (``cf_lightning.compare``)."""
