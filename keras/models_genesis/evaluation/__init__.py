"""Metrics, statistics over runs and whole-volume inference."""
