"""Strategy x label budget x seed grids of fine-tuning runs, their baselines and their reports."""
