"""Measurement agents under a real study: throughput, no job lost or timed twice, a killed agent recovered.

A search study (tiny space, a 20-step teacher: this measures the agents, not
the students) runs on a device profile `bench-standin` served by two
`nnsearch agent` processes (the local runner: this machine's interpreter stands
in for the device). While the agents fill the device's lookup table, one agent
is SIGKILLed in the middle of a job and started again; its job must go to an
agent after the lease (5 s). Every job is then awaited, the agents stopped.

    python benchmarks/agents.py --quick    # 6 trials at 128x128, a few minutes on 2 cores
    python benchmarks/agents.py            # 12 trials at 256x256
    python benchmarks/agents.py --db postgresql+psycopg://postgres@127.0.0.1:5432/test  # a shared server

The last line reads
`agents: jobs=... jobs_per_min=... duplicate_jobs=0 lost_jobs=0 lease_recoveries=... within10=... spearman=...`
- `jobs`: measurement jobs (probes, their interleaved repeats, whole models);
  `jobs_per_min`: jobs finished per minute, from the first job queued to the last finished;
- `duplicate_jobs`: jobs that two agents both reported finished, plus models with more than one measured row;
- `lost_jobs`: jobs neither done nor failed at the end;
- `lease_recoveries`: jobs claimed again after their agent died (its lease ran out);
- `within10`, `spearman`: the device's whole-model measurements against the table's predictions.
On SQLite the store is a file in a temporary folder; with --db the study and
device names get a unique suffix.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import Row, func, select  # noqa: E402

from nnsearch.latency.accuracy import prediction_accuracy  # noqa: E402
from nnsearch.store.engine import Store  # noqa: E402
from nnsearch.store.schema import LatencyRun, MeasureAgent, MeasureJob  # noqa: E402

LEASE_S = 5
#: The tiny study's `nnsearch search` flags (a 20-step teacher only exercises the pipeline).
TINY_STUDY = (  # noqa: SIM905 - one line reads as the command line it is
    "--space tiny --steps 6 --epochs 2 --batch 2 --crops 32 --teacher-steps 20 --teacher-margin=-inf "
    "--max-side 64 --no-early-stop"
).split()
_DONE_LINE = re.compile(r"job (\d+) \S+: [\d.]+ ms")


def agent(db: str, device: str, name: str, log: Path) -> subprocess.Popen:
    """An `nnsearch agent` process writing its output to `log`."""
    command = [
        sys.executable,
        "-m",
        "nnsearch",
        "agent",
        "--device",
        device,
        "--db",
        db,
        "--lease",
        str(LEASE_S),
        "--poll",
        "0.3",
        "--name",
        name,
    ]
    return subprocess.Popen(command, env=_env(), stdout=log.open("a"), stderr=subprocess.STDOUT, cwd=log.parent)


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH")))),
        "PYTHONUNBUFFERED": "1",
    }


def jobs(store: Store, device: str) -> Sequence[Row]:
    query = select(
        MeasureJob.id,
        MeasureJob.kind,
        MeasureJob.state,
        MeasureJob.agent,
        MeasureJob.attempts,
        MeasureJob.created_at,
        MeasureJob.finished_at,
    ).where(MeasureJob.device == device)
    return store.reading(lambda conn: conn.execute(query).all())


def wait(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"agents: timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="6 trials at 128x128 instead of 12 at 256x256")
    parser.add_argument("--db", default=None, help="store URL (default: a temporary SQLite file)")
    args = parser.parse_args(argv)
    trials, side = (6, 128) if args.quick else (12, 256)
    suffix = "" if args.db is None else f"-{uuid.uuid4().hex[:6]}"
    device, study = f"bench-standin{suffix}", f"agents-bench{suffix}"
    with tempfile.TemporaryDirectory(prefix="nnsearch-agents-bench-") as folder:
        work = Path(folder)
        db = args.db or f"sqlite:///{work / 'store.db'}"
        store = Store(db)
        logs = [work / "agent0.log", work / "agent1.log", work / "agent0-restarted.log"]
        agents = [agent(db, device, f"agent{i}", logs[i]) for i in range(2)]
        count = lambda: store.reading(  # noqa: E731
            lambda conn: conn.scalar(
                select(func.count()).select_from(MeasureAgent).where(MeasureAgent.device == device)
            )
        )
        wait(lambda: count() == 2, 300, "both agents to register")
        env = {**_env(), "NNSEARCH_CACHE": str(work / "cache")}
        search = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "nnsearch",
                "search",
                "--db",
                db,
                "--study",
                study,
                "--trials",
                str(trials),
                *TINY_STUDY,
                "--resolution",
                f"{side}x{side}",
                "--device",
                device,
            ],
            env=env,
            cwd=work,
            stdout=(work / "search.log").open("w"),
            stderr=subprocess.STDOUT,
        )
        wait(
            lambda: any(j.state == "running" and j.agent == "agent0" for j in jobs(store, device)),
            600,
            "agent0 to hold a job",
        )
        agents[0].send_signal(signal.SIGKILL)
        agents[0].wait()
        print("agents: killed agent0 (SIGKILL) while it held a job; restarting it", flush=True)
        agents[0] = agent(db, device, "agent0", logs[2])
        if search.wait() != 0:
            raise SystemExit(f"agents: the study failed:\n{(work / 'search.log').read_text()[-3000:]}")
        wait(lambda: all(j.state in ("done", "failed") for j in jobs(store, device)), 1800, "every job to finish")
        for process in agents:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=120)
        rows = jobs(store, device)
        reported = Counter(int(m.group(1)) for log in logs for m in _DONE_LINE.finditer(log.read_text()))
        measured = store.reading(
            lambda conn: conn.execute(
                select(LatencyRun.nn, func.count())
                .where(LatencyRun.device == device, LatencyRun.kind == "measured")
                .group_by(LatencyRun.nn)
            ).all()
        )
        duplicates = sum(n > 1 for n in reported.values()) + sum(n > 1 for _, n in measured)
        lost = sum(j.state not in ("done", "failed") for j in rows)
        recoveries = sum(j.attempts > 1 for j in rows)
        minutes = (max(j.finished_at for j in rows) - min(j.created_at for j in rows)).total_seconds() / 60
        done = sum(j.state == "done" for j in rows)
        accuracy = prediction_accuracy(store, device)
        by_kind = Counter(j.kind for j in rows)
        print(
            f"agents: {trials} trials at {side}x{side}; {by_kind['probe']} probe and {by_kind['model']} model jobs; "
            f"{sum(j.state == 'failed' for j in rows)} failed; split "
            f"{dict(sorted(Counter((j.agent or '').split('@')[0] for j in rows).items()))}",
            flush=True,
        )
        if accuracy is not None:
            print(f"agents: {accuracy.line()}")
        store.dispose()
    print(
        f"agents: jobs={len(rows)} jobs_per_min={done / minutes:.1f} duplicate_jobs={duplicates} lost_jobs={lost} "
        f"lease_recoveries={recoveries} within10={accuracy.within10 if accuracy else float('nan'):.2f} "
        f"spearman={accuracy.spearman if accuracy else float('nan'):.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
