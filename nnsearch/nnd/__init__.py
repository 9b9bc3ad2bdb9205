"""The NN Dataset exchange: importing its file layout into the store and exporting the store to it.

`layout` describes the layout and its names; `importing` (`import_nnd`) and
`exporting` (`export_nnd`) read and write it; `files` writes code files,
`models` rebuilds and counts imported networks, and `runs` reads and writes the
on-device runtime records (`stat/run/...`).
"""
