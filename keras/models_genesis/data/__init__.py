"""Data, grouped by job: `io` (formats and geometry), `pretraining` (the proxy task's cubes, slices,
crops and pair generators), `target_tasks` (the five tasks' readers, candidates, prepared data sets,
the LIDC consensus) and `phantoms` (the embedded synthetic data sets)."""
