"""The NN Dataset exchange: importing its file layout into the store and exporting the store to it.

`transfer` (`import_nnd`, `export_nnd`) reads and writes the layout; `files`
the code files, `models` rebuilding and counting imported networks, and `runs`
the on-device runtime records (`stat/run/...`).
"""
