"""Data: volumes, cube extraction (proxy task), generators, target-task data and phantoms."""
