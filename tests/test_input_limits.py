"""Bad input exits 2 with one paragraph naming the file, field or value; no traceback (real CLI processes)."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_store_nnd import write_nnd

HUGE = 2**70  # beyond 64 bits


def nnsearch(*args: str, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "nnsearch", *args], capture_output=True, text=True, timeout=300, env=env, **kwargs
    )


def refused(done: subprocess.CompletedProcess, *named: str) -> str:
    """The error paragraph of a run that exited 2 without a traceback and names every one of `named`."""
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    lines = [
        line for line in done.stderr.splitlines() if line.startswith(("nnsearch: error:", "nnsearch search: error:"))
    ]
    assert len(lines) == 1, done.stderr
    for name in named:
        assert name in lines[0], lines[0]
    return lines[0]


# ---- the store ----------------------------------------------------------------------------------


def test_a_file_that_is_not_a_database_is_refused(tmp_path):
    junk = tmp_path / "photo.db"
    junk.write_bytes(os.urandom(4096))
    for command in (["check"], ["import-nnd", str(write_nnd(tmp_path / "nnd"))]):
        refused(nnsearch(*command, "--db", str(junk)), str(junk), "not a database")
    assert junk.stat().st_size == 4096


def test_a_new_store_gets_its_folder_or_a_clear_error(tmp_path):
    tree = write_nnd(tmp_path / "nnd")
    nested = tmp_path / "new" / "deeper" / "store.db"
    for db in (str(nested), f"sqlite:///{tmp_path / 'url' / 'store.db'}"):
        done = nnsearch("import-nnd", str(tree), "--db", db)
        assert done.returncode == 0, done.stderr
    assert nested.is_file()
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    refused(nnsearch("import-nnd", str(tree), "--db", str(blocker / "sub" / "store.db")), str(blocker / "sub"))
    refused(nnsearch("check", "--db", str(tmp_path / "missing" / "store.db")), "does not exist")
    assert not (tmp_path / "missing").exists()  # opening a store that is not there creates nothing


# ---- search spaces ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "widths, field, value",
    [
        ("[1000000000]", "'widths'", "1000000000"),
        ("[[8, 16], [-4]]", "'widths[1]'", "-4"),
        ("[[8, 16], [0, 8]]", "'widths[1]'", "[0]"),
    ],
)
def test_space_widths_are_bounded_when_the_space_is_read(tmp_path, widths, field, value):
    space = tmp_path / "space.yaml"
    space.write_text(f"levels: [2]\nwidths: {widths}\n")
    db = tmp_path / "store.db"
    message = refused(
        nnsearch("search", "--space", str(space), "--db", str(db), "--trials", "1"), str(space), field, value
    )
    assert "between 2 and 1024" in message
    assert not db.exists()  # refused before the store or any trial


def test_space_blocks_and_levels_are_bounded(tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text("levels: [2]\nwidths: [8]\nblocks: [[1], [0, 99]]\n")
    refused(nnsearch("search", "--space", str(space), "--trials", "1"), "'blocks[1]'", "between 0 and 16", "99")
    space.write_text("levels: [2, 40]\nwidths: [8]\n")
    refused(nnsearch("search", "--space", str(space), "--trials", "1"), "'levels'", "between 1 and 8", "40")


# ---- images -------------------------------------------------------------------------------------


def write_image(path: Path, height: int, width: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


@pytest.mark.parametrize("layout", ["pairs", "clean"])
def test_images_smaller_than_the_ssim_window_are_refused_when_read(tmp_path, layout):
    data = tmp_path / "data"
    small = data / ("noisy" if layout == "pairs" else "") / "tiny.png"
    for stem, (height, width) in {"big": (32, 32), "tiny": (10, 40)}.items():
        for role in ("noisy", "clean") if layout == "pairs" else ("",):
            write_image(data / role / f"{stem}.png", height, width)
    spec = str(data) if layout == "pairs" else f"clean:{data}"
    message = refused(
        nnsearch("search", "--space", "tiny", "--data", spec, "--db", str(tmp_path / "s.db"), "--trials", "1"),
        str(small),
        "40x10",
    )
    assert "at least 11 px" in message
    refused(nnsearch("search", "--space", "tiny", "--max-side", "8", "--trials", "1"), "--max-side", ">= 11")


# ---- integers and names the store cannot hold ----------------------------------------------------


def test_a_latency_csv_integer_beyond_64_bits_names_the_line(tmp_path):
    csv = tmp_path / "phone.csv"
    csv.write_text(
        "op,in_h,in_w,in_c,out_c,kernel,stride,activation,median_ms\n"
        f"CONV_2D,64,64,8,8,3,1,RELU,0.5\nCONV_2D,{HUGE},64,8,8,3,1,RELU,0.5\n"
    )
    db = tmp_path / "store.db"
    refused(nnsearch("lut", "import", str(csv), "--device", "phone", "--db", str(db)), f"{csv}:3", "in_h", str(HUGE))
    done = nnsearch("lut", "show", "--device", "phone", "--db", str(db))
    assert "0 entries" in done.stdout + done.stderr or "no " in (done.stdout + done.stderr).lower()


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")


def stat_rows(db: str) -> int:
    from nnsearch.store.dataset_api import data

    return len(data(db=db))


def test_an_epoch_file_name_beyond_64_bits_is_refused_on_every_engine(tmp_path, db):
    tree = write_nnd(tmp_path / "nnd", epoch=str(HUGE))
    refused(nnsearch("import-nnd", str(tree), "--db", db), f"{HUGE}.json", "epoch", "32-bit")
    assert nnsearch("check", "--db", db).returncode in (0, 2)  # no store, or an empty one
    done = nnsearch("import-nnd", str(write_nnd(tmp_path / "fine")), "--db", db)
    assert done.returncode == 0 and stat_rows(db) == 2


@pytest.mark.parametrize("part", ["dataset", "nn"])
def test_names_longer_than_their_column_are_refused_on_every_engine(tmp_path, db, part):
    long = "x" * 200
    config = f"img-denoising_{long}_psnr_Net" if part == "dataset" else f"img-denoising_sidd_psnr_{long}"
    tree = write_nnd(tmp_path / "nnd", config=config)
    message = refused(nnsearch("import-nnd", str(tree), "--db", db), config, "200 characters", "at most 128")
    assert "nothing was written" in message


# ---- the cache ----------------------------------------------------------------------------------


def _file_size_limit(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG) instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_a_cache_that_cannot_take_more_is_a_clear_error(tmp_path, pg_url):
    cache = tmp_path / "cache"
    env = {**os.environ, "NNSEARCH_CACHE": str(cache), "NNSEARCH_RESULTS": str(tmp_path / "results")}
    for stem in ("a", "b"):
        for role in ("noisy", "clean"):
            write_image(tmp_path / "data" / role / f"{stem}.png", 32, 32)
    done = nnsearch(
        "search",
        "--space",
        "tiny",
        "--data",
        str(tmp_path / "data"),
        "--db",
        pg_url,
        "--trials",
        "1",
        env=env,
        preexec_fn=_file_size_limit(16),
    )  # the store is on the server: only the cache fills
    message = refused(done, str(cache), "EFBIG")
    assert "NNSEARCH_CACHE" in message
