"""Replay: finished studies as lookup tables, driven through the search loop to compare samplers."""
