"""Data: Pick-a-Pic v2 filtering and datasets, evaluation prompt sets, the embedded toy world."""
