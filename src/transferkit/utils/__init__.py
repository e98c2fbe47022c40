"""Small helpers shared across transferkit (atomic file writes)."""
