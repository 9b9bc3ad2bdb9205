"""Latency: per-layer lookup tables, one-op probes, and the TFLite writer and interpreter (`latency.tflite`)."""
