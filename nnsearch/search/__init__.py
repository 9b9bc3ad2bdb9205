"""Search studies: `study` assembles config, Optuna set-up, training inputs, one candidate trial (`candidate_trial`) and the trial loop;
also claims and heartbeats, workers, early stopping, live status, `samplers/`, and `api` (create/load by name).
Latency comes from `nnsearch.latency`."""
