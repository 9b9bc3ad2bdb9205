"""Search studies: the trial loop, trial claims and heartbeats, workers, early stopping, live status, samplers."""
