"""Evaluation metrics beyond rating error: top-K ranking quality."""

from cf_lightning.metrics.ranking import RANKING_METRICS, UserItems, ranking_metrics, top_k

__all__ = ["RANKING_METRICS", "UserItems", "ranking_metrics", "top_k"]
