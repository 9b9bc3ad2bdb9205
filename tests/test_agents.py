"""Measurement agents: the job queue, leases, runners and a study served by an agent (real interpreter, real stores).

The "device" here is this machine's ai-edge-litert interpreter under its own
profile name (`standin`), so every timing is real; the `adb` runner is checked
against a stand-in `adb` (tests/adb_standin.py) that runs the same interpreter
on the pushed file: that checks the runner's commands and its parsing of
benchmark_model's output, not a phone.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import tiny_study_flags
from sqlalchemy import func, select

from nnsearch.cli import main
from nnsearch.latency.agents.adb import parse_benchmark_output
from nnsearch.latency.agents.agent import Agent
from nnsearch.latency.agents.interface import RunnerError
from nnsearch.latency.agents.jobs import enqueue_model, enqueue_probes, job_counts
from nnsearch.latency.agents.runners import LocalRunner, make_runner
from nnsearch.latency.probes import space_keys
from nnsearch.latency.stored_table import stored_keys
from nnsearch.latency.tflite import export_tflite
from nnsearch.model.arch import Arch
from nnsearch.model.space import load_space
from nnsearch.model.student import build_student
from nnsearch.store.engine import Store
from nnsearch.store.record import Bundle
from nnsearch.store.recording import record_bundle
from nnsearch.store.schema import LatencyLUT, LatencyRun, MeasureJob

DEVICE = "standin"
REPO = Path(__file__).resolve().parents[1]


def arches(count: int) -> list[Arch]:
    """`count` distinct small students."""
    widths = [(4, 8), (8, 16), (4, 16), (8, 8), (12, 16), (16, 24), (8, 24), (12, 24)]
    return [
        Arch(w, (1, i % 2), ("concat" if i % 3 else "add",), "residual", "conv", True)
        for i, w in enumerate(widths[:count])
    ]


def record_models(store: Store, models: list[Arch], folder: Path, side: int = 64) -> dict[str, bytes]:
    """Store the models (code and architecture) and return their exported .tflite bytes by name."""
    record_bundle(
        store,
        Bundle(
            nn_code={a.name: a.model_code() for a in models},
            nn_arch={a.name: json.dumps(a.to_dict(), sort_keys=True) for a in models},
        ),
    )
    files = {}
    for arch in models:
        path = export_tflite(build_student(arch).eval(), folder / f"{arch.name}.tflite", (1, 3, side, side))
        files[arch.name] = path.read_bytes()
    return files


def queue_models(store: Store, files: dict[str, bytes], side: int = 64) -> list[int]:
    return [enqueue_model(store, DEVICE, nn, data, side, side, 1, "fp32") for nn, data in files.items()]


def jobs(store: Store) -> list[MeasureJob]:
    with store.session() as session:
        return list(session.scalars(select(MeasureJob).order_by(MeasureJob.id)))


def measured_rows(store: Store) -> dict[str, int]:
    """Measured latency_run rows per model on the stand-in device."""
    query = (
        select(LatencyRun.nn, func.count())
        .where(LatencyRun.device == DEVICE, LatencyRun.kind == "measured")
        .group_by(LatencyRun.nn)
    )
    return dict(store.reading(lambda conn: conn.execute(query).all()))


def agent_command(db: str, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "nnsearch",
        "agent",
        "--device",
        DEVICE,
        "--db",
        db,
        "--poll",
        "0.2",
        "--no-repeat",
        *extra,
    ]


def environment() -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}


def wait_until(condition, timeout_s: float = 180, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_probe_jobs_fill_the_device_table_and_a_rejected_model_fails_with_its_message(store, tmp_path):
    keys = space_keys(load_space("tiny"), 64, 64)[:6]
    store.write(lambda session: enqueue_probes(session, DEVICE, keys, 1, "fp32"))
    bad = enqueue_model(store, DEVICE, "not-a-model", b"this is no flatbuffer", 64, 64, 1, "fp32")
    agent = Agent(store, DEVICE, LocalRunner(), lease_s=10, poll_s=0.1, log=lambda line: None)
    stats = agent.run(idle_exit_s=0.3)
    probes = [j for j in jobs(store) if j.kind == "probe"]
    # 6 first timings, each with an interleaved repeat queued behind the rest (and another round where the
    # repeat found the entry inflated, which a loaded machine can cause), and the one failure
    assert (stats.done, stats.failed, stats.lost) == (len(probes), 1, 0) and {j.state for j in probes} == {"done"}
    assert sorted(j.round for j in probes if j.round < 2) == [0] * 6 + [1] * 6
    assert stored_keys(store, DEVICE, 1, "fp32") == set(keys)
    with store.session() as session:
        rows = list(session.scalars(select(LatencyLUT).where(LatencyLUT.device == DEVICE)))
    assert {(r.runtime, r.source) for r in rows} == {("tflite-cpu", "measured")}
    assert all(r.min_ms > 0 and r.runs >= 5 for r in rows)
    failed = next(j for j in jobs(store) if j.id == bad)
    assert failed.state == "failed" and "not a valid Flatbuffer" in failed.message
    assert failed.runtime == "tflite-cpu" and failed.runtime_version.startswith("ai-edge-litert")
    assert job_counts(store) == {DEVICE: {"queued": 0, "running": 0, "done": len(probes), "failed": 1}}


def test_a_sigkilled_agent_job_is_finished_by_the_restarted_agent_once(tmp_path):
    db = f"sqlite:///{tmp_path / 'store.db'}"
    store = Store(db)
    files = record_models(store, arches(3), tmp_path)
    queue_models(store, files)
    # the victim times with so many runs that it is surely still timing its first job when it is killed
    victim = subprocess.Popen(
        agent_command(db, "--lease", "3", "--runs", "1000000", "--name", "victim"),
        env=environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_until(
            lambda: any(j.state == "running" and j.agent == "victim" for j in jobs(store)),
            what="the victim to claim a job",
        )
        killed = next(j.id for j in jobs(store) if j.state == "running")
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
    finally:
        victim.kill()
    restarted = subprocess.run(
        agent_command(db, "--lease", "3", "--idle-exit", "8", "--name", "restarted"),
        env=environment(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    assert "claimed again after its lease ran out" in restarted.stdout
    finished = {j.id: j for j in jobs(store)}
    assert {j.state for j in finished.values()} == {"done"}
    assert finished[killed].attempts == 2 and finished[killed].agent == "restarted"
    assert all(j.attempts == 1 for i, j in finished.items() if i != killed)
    assert measured_rows(store) == {nn: 1 for nn in files}  # every model timed and recorded exactly once
    store.dispose()


def test_two_agents_on_one_profile_split_the_work(tmp_path):
    db = f"sqlite:///{tmp_path / 'store.db'}"
    store = Store(db)
    files = record_models(store, arches(6), tmp_path, side=128)
    # each job takes seconds (1500 runs), so the second agent claims work while the first is busy, even under load
    agents = [
        subprocess.Popen(
            agent_command(db, "--runs", "1500", "--idle-exit", "4", "--name", f"agent{i}"),
            env=environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    try:
        wait_until(lambda: len(jobs(store)) == 0 and _registered(store) == 2, what="both agents to register")
        queue_models(store, files, side=128)
        outputs = [a.communicate(timeout=300)[0] for a in agents]
    finally:
        for a in agents:
            a.kill()
    assert [a.returncode for a in agents] == [0, 0], outputs
    done = jobs(store)
    assert [j.state for j in done] == ["done"] * 6 and all(j.attempts == 1 for j in done)
    assert {j.agent for j in done} == {"agent0", "agent1"}  # both timed some
    assert measured_rows(store) == {nn: 1 for nn in files}
    store.dispose()


def _registered(store: Store) -> int:
    from nnsearch.store.schema import MeasureAgent

    return store.reading(lambda conn: conn.scalar(select(func.count()).select_from(MeasureAgent)))


def adb_standin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An executable `adb` that runs tests/adb_standin.py (see its docstring), with a scratch device root."""
    monkeypatch.setenv("ADB_STANDIN_ROOT", str(tmp_path / "phone"))
    monkeypatch.setenv("PYTHONPATH", environment()["PYTHONPATH"])
    adb = tmp_path / "adb"
    adb.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{REPO / "tests" / "adb_standin.py"}" "$@"\n')
    adb.chmod(adb.stat().st_mode | stat.S_IEXEC)
    return adb


def test_adb_runner_pushes_runs_benchmark_model_and_parses_its_timing(tmp_path, monkeypatch):
    """Checks the adb runner's commands and parsing against a stand-in adb (the real interpreter, no phone)."""
    adb = adb_standin(tmp_path, monkeypatch)
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    files = record_models(store, arches(1), tmp_path)
    [good] = queue_models(store, files)
    bad = enqueue_model(store, DEVICE, "broken", b"no flatbuffer here", 64, 64, 1, "fp32")
    runner = make_runner("adb", {"adb": str(adb), "serial": "emulator-5554", "runtime_version": "2.16 (test)"})
    stats = Agent(store, DEVICE, runner, lease_s=10, poll_s=0.1, runs=20, log=lambda line: None).run(idle_exit_s=0.3)
    assert (stats.done, stats.failed) == (1, 1)
    result = {j.id: j for j in jobs(store)}
    assert result[good].state == "done" and result[good].runtime == "tflite-benchmark_model"
    assert result[good].runtime_version == "2.16 (test)" and result[good].runs == 20
    assert 0 < result[good].min_ms <= result[good].median_ms <= result[good].max_ms
    assert result[bad].state == "failed" and "not a valid Flatbuffer" in result[bad].message
    calls = (tmp_path / "phone" / "calls.log").read_text().splitlines()
    model = next(iter(files))
    assert calls[0].startswith("-s emulator-5554 push ") and calls[0].endswith(
        f"/data/local/tmp/nnsearch/{model}.tflite"
    )
    assert calls[1] == (
        f"-s emulator-5554 shell /data/local/tmp/benchmark_model "
        f"--graph=/data/local/tmp/nnsearch/{model}.tflite --num_threads=1 --num_runs=20 --warmup_runs=1"
    )
    assert measured_rows(store) == {model: 1}
    store.dispose()


def test_benchmark_model_output_parsing():
    output = (
        "count=1 curr=2100\ncount=50 first=2000 curr=1510 min=1500 max=2100 avg=1600.5 std=50\n"
        "Inference timings in us: Init: 300, First inference: 2000, Warmup (avg): 2100, Inference (avg): 1600.5\n"
    )
    parsed = parse_benchmark_output(output)
    assert (parsed.min_ms, parsed.max_ms, parsed.median_ms, parsed.runs) == (1.5, 2.1, 1.6005, 50)
    only_average = parse_benchmark_output("Inference timings in us: Init: 1, Inference (avg): 2500")
    assert only_average.median_ms == 2.5 and only_average.min_ms is None
    with pytest.raises(RunnerError, match="no timing"):
        parse_benchmark_output("ERROR: failed to load\n")


@pytest.mark.filterwarnings(
    "ignore::pytest.PytestUnraisableExceptionWarning"
)  # litert's Delegate.__del__ after a failed load
def test_runner_choice_errors_are_plain(capsys):
    for argv, message in (
        (["--runner", "nope"], "unknown runner 'nope'"),
        (["--runner", "no_such_module:make"], "cannot import runner plugin"),
        (["--delegate-option", "a=b"], "--delegate-option needs --delegate"),
        (["--runner-option", "novalue"], "takes KEY=VALUE"),
    ):
        assert main(["agent", "--device", DEVICE, "--db", "sqlite:///:memory:", *argv]) == 2
        assert message in capsys.readouterr().err
    with pytest.raises(Exception, match="cannot load the TFLite delegate"):
        LocalRunner(delegate="/no/such/libdelegate.so")


TINY_STUDY = tiny_study_flags("64x64", "--device", DEVICE)


def test_a_postgresql_study_served_by_one_agent_records_its_measurements(pg_url, capsys):
    command = [a for a in agent_command(pg_url, "--lease", "10", "--name", "board") if a != "--no-repeat"]
    agent = subprocess.Popen(command, env=environment(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    store = Store(pg_url)
    try:
        wait_until(lambda: _registered(store) == 1, what="the agent to register")
        assert main(["search", "--db", pg_url, "--study", "served", "--trials", "3", *TINY_STUDY]) == 0
        waited = capsys.readouterr().out
        # the same device without waiting: the trials go on with the prediction, the measurement lands later
        assert (
            main(
                [
                    "search",
                    "--db",
                    pg_url,
                    "--study",
                    "unwaited",
                    "--trials",
                    "2",
                    "--seed",
                    "7",
                    "--no-latency-wait",
                    *TINY_STUDY,
                ]
            )
            == 0
        )
        unwaited = capsys.readouterr().out
        wait_until(
            lambda: all(j.state == "done" for j in jobs(store) if j.kind == "model"),
            what="the agent to time the unwaited study's models",
        )
    finally:
        agent.send_signal(signal.SIGTERM)
        output = agent.communicate(timeout=60)[0]
    assert agent.returncode == 0, output
    assert "agent board: " in output and "measured" in waited and "queued for the agents" in unwaited
    import nnsearch

    for name in ("served", "unwaited"):
        results = nnsearch.load_study(name, db=pg_url).results()
        complete = results[results["state"] == "complete"]
        assert len(complete) >= 2 and complete["measured_ms"].notna().all()
        assert (complete["latency_ms"] == complete["measured_ms"]).all()  # the measured figure, by the one rule
    model_jobs = [j for j in jobs(store) if j.kind == "model"]
    assert model_jobs and {j.agent for j in model_jobs} == {"board"} and all(j.attempts == 1 for j in model_jobs)
    assert all(j.predicted_ms > 0 and j.runtime == "tflite-cpu" for j in model_jobs)
    assert set(measured_rows(store).values()) == {1}
    assert stored_keys(store, DEVICE, 1, "fp32") >= set(space_keys(load_space("tiny"), 64, 64))
    assert main(["lut", "show", "--device", DEVICE, "--db", pg_url]) == 0
    shown = capsys.readouterr().out
    assert f"{DEVICE}: jobs 0 queued" in shown and "within +-10%" in shown and "Spearman" in shown
    store.dispose()


def inflate_entries(store: Store, factor: float) -> dict[tuple, float]:
    """Multiply the stand-in device's stored entries by `factor`, as a busy moment would have (entry -> old ms)."""
    with store.session() as session:
        rows = list(session.scalars(select(LatencyLUT).where(LatencyLUT.device == DEVICE)))
        before = {(r.op, r.in_h, r.in_w, r.in_c, r.out_c, r.kernel, r.stride, r.activation): r.min_ms for r in rows}
        for row in rows:
            row.min_ms, row.median_ms, row.max_ms = row.min_ms * factor, row.median_ms * factor, row.max_ms * factor
    return before


def test_a_model_the_table_over_predicts_gets_its_inflated_entries_re_measured(store, tmp_path, capsys):
    from nnsearch.latency.probes import arch_keys

    [arch] = arches(1)
    files = record_models(store, [arch], tmp_path)
    keys = [key for key, _ in arch_keys(arch, 64, 64)]
    store.write(lambda session: enqueue_probes(session, DEVICE, keys, 1, "fp32"))
    agent = Agent(store, DEVICE, LocalRunner(), lease_s=10, poll_s=0.1, repeat_probes=False, log=lambda line: None)
    agent.run(idle_exit_s=0.3)
    quiet = inflate_entries(store, 5.0)  # the whole table measured while something else ran
    inflated_sum = sum(5.0 * quiet[tuple(k)] * n for k, n in arch_keys(arch, 64, 64))
    model = enqueue_model(store, DEVICE, arch.name, files[arch.name], 64, 64, 1, "fp32", predicted_ms=inflated_sum)
    agent.run(idle_exit_s=0.3)
    by_id = {j.id: j for j in jobs(store)}
    assert by_id[model].state == "done" and "over-predicts it" in by_id[model].message
    rechecks = [j for j in by_id.values() if j.kind == "probe" and j.round == 1]
    assert len(rechecks) == len(keys) and {j.state for j in rechecks} == {"done"}
    with store.session() as session:
        now = {
            (r.op, r.in_h, r.in_w, r.in_c, r.out_c, r.kernel, r.stride, r.activation): r.min_ms
            for r in session.scalars(select(LatencyLUT).where(LatencyLUT.device == DEVICE))
        }
    assert all(now[key] < 5.0 * quiet[key] for key in quiet)  # the repeat's quieter minimum replaced each one
    assert main(["agent", "--status", "--db", store.url]) == 0
    status = capsys.readouterr().out
    assert f"{DEVICE}: jobs 0 queued, 0 running, {len(by_id)} done, 0 failed" in status
    assert "1 whole-model measurement(s) paired" not in status  # no prediction row was recorded for it


def test_host_remeasure_replaces_inflated_entries_with_the_quieter_timing():
    from nnsearch.latency.freshness import remeasure
    from nnsearch.latency.probes import arch_keys
    from nnsearch.latency.table import LatencyTable, LutEntry, MemoryBackend, host_profile, measure_keys

    [arch] = arches(1)
    keys = [key for key, _ in arch_keys(arch, 32, 32)][:4]
    device = host_profile()
    measured = measure_keys(keys, device, runs=3)
    busy = [
        LutEntry(
            device, e.key, "measured", median_ms=e.median_ms * 4, min_ms=e.min_ms * 4, max_ms=e.max_ms * 4, runs=e.runs
        )
        for e in measured
    ]
    table = LatencyTable(device, MemoryBackend(busy), runs=3)
    inflated = remeasure(table, keys)
    assert {key for key, _, _ in inflated} == set(keys)
    after = table.backend.get(device, keys)
    assert all(after[e.key].ms < e.ms for e in busy)


def test_each_device_s_prediction_error_pairs_measurements_with_predictions(store, tmp_path):
    from nnsearch.latency.accuracy import prediction_accuracy
    from nnsearch.latency.candidate import CandidateLatency
    from nnsearch.search.config import LatencyConfig

    models = arches(5)
    record_models(store, models, tmp_path)
    rows = []
    for i, arch in enumerate(models):  # predictions 2x the measurement: a table that fits this device badly
        for kind, ms in (("measured", 1.0 + i), ("predicted", 2.0 * (1.0 + i))):
            rows.append(
                dict(
                    nn=arch.name,
                    device=DEVICE,
                    precision="fp32",
                    runtime="tflite-cpu",
                    runtime_version="x",
                    threads=1,
                    height=64,
                    width=64,
                    kind=kind,
                    median_ms=ms,
                    min_ms=ms,
                    max_ms=ms,
                    runs=1,
                )
            )
    record_bundle(store, Bundle(latencies=rows))
    accuracy = prediction_accuracy(store, DEVICE)
    assert (accuracy.pairs, accuracy.within10, accuracy.median_ratio) == (5, 0.0, 2.0)
    assert accuracy.spearman == pytest.approx(1.0)  # the right order, every figure 2x off
    warned: list[str] = []
    latency = CandidateLatency(store, LatencyConfig(device=DEVICE, height=64, width=64), tmp_path, log=warned.append)
    latency.warn_if_table_predicts_badly()
    latency.warn_if_table_predicts_badly()
    assert len(warned) == 1 and f"table of device '{DEVICE}' predicts it badly" in warned[0]


def test_lut_build_fills_an_agent_served_device_through_its_agent(tmp_path, capsys):
    import threading

    db = f"sqlite:///{tmp_path / 'store.db'}"
    store = Store(db)
    agent = Agent(store, DEVICE, LocalRunner(), lease_s=10, poll_s=0.1, repeat_probes=False, log=lambda line: None)
    agent.register()
    serving = threading.Thread(target=agent.run, kwargs={"idle_exit_s": 5})
    serving.start()
    try:
        code = main(["lut", "build", "--device", DEVICE, "--space", "tiny", "--resolution", "32x32", "--db", db])
    finally:
        serving.join()
    out = capsys.readouterr().out
    total = len(space_keys(load_space("tiny"), 32, 32))
    assert code == 0 and "(by its agents)" in out and f"measured {total}, reused 0 of {total} keys" in out
    assert stored_keys(store, DEVICE, 1, "fp32") == set(space_keys(load_space("tiny"), 32, 32))
    store.dispose()
