"""Experiments over trained runs: arms at equal budget and run helpers (runs), method grids over seeds (grid), figures (plots)."""
