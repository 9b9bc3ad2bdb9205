"""Latency: how fast a student runs on a device, predicted from lookup tables or measured whole.

The stage sits above the store (it keeps its tables and timings there) and
below the search, which calls it. One module answers each question:

- the latency of a candidate, predicted before training and measured after:
  `candidate.CandidateLatency` (a study's candidates), `service.predict_latency`
  and `service.profile_nn` (any architecture or stored model);
- the table of a device profile: `service.resolve_profile` (a device name to
  its `table.DeviceProfile`) and `service.latency_table` (its `table.LatencyTable`
  over the store's `latency_lut`, `stored_table`, and this machine's table,
  `machine_table`); a finished study's table in memory: `recorded.stored_predictor`;
- building, exporting and importing a table: `service.fill_space_table`
  (measure here), `probes.export_probes` (one-op models to time on a device),
  `table.import_latencies` (the device's timings back);
- the TFLite files themselves: `tflite` (writer, interpreter, timing) and
  `quantize` (post-training quantization of a TFLite file);
- timing on the device itself: `agents` (measurement agents served through the store).

Reading stored latencies (the rule "measured before predicted, minimum over
runs") is the store's: `nnsearch.store.timings`.
"""
