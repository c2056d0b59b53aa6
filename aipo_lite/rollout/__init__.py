"""Rollouts with active interaction: groups of independent and assisted rollouts (groups), the consult hook of assisted rows (consult), the bottleneck detector (detector)."""
