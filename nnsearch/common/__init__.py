"""Small helpers every stage uses: compute device, cache folder, progress display, Ctrl-C handling."""
