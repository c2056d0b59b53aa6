"""AIPO through TRL's GRPOTrainer (trl_bridge) and the step-equivalence check against it (trl_compare); needs the `trl` extra."""
