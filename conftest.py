"""Root conftest: makes the source checkout importable for `pytest` run from the repo root."""
