"""Measurement agents: latency from the device that matters, served to studies through the store.

A study whose device profile is served by agents queues jobs in the store
(`measure_job`): one-op probes for the lookup-table keys that device lacks, and
each candidate's whole exported model. `nnsearch agent --device NAME --db URL`,
on the machine that has (or drives) the device, claims them under a lease with
a heartbeat, times them with its runner and writes the results back.

Modules: `jobs` (the queue: enqueue, claim, renew, complete, fail, counts),
`runners` (the runner interface, the `local` interpreter runner, plugins),
`adb` (a phone's `benchmark_model` over adb), `landing` (what a result writes:
lookup-table entries, `latency_run` rows, re-measurements), `agent` (the loop),
`service` (the study's side: serving checks, filling a table, whole-model jobs).
"""
