"""Pre-training (restoration proxy task) and fine-tuning (target tasks)."""
