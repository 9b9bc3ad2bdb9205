"""`nnsearch agent`: serve a device profile's measurement jobs, or show the queue (`--status`)."""

from __future__ import annotations

import argparse
import signal

from nnsearch.commands import add_db_option
from nnsearch.errors import NNSearchError


def cmd_agent(args: argparse.Namespace) -> int:
    from nnsearch.store.engine import Store

    store = Store(args.db, create=not args.status)
    try:
        if args.status:
            print_status(store, args.device)
            return 0
        if not args.device:
            raise NNSearchError("nnsearch agent needs --device NAME (the device profile it serves), or --status")
        return serve(store, args)
    finally:
        store.dispose()


def serve(store, args: argparse.Namespace) -> int:  # store: Store
    from nnsearch.latency.agents.agent import Agent
    from nnsearch.latency.agents.runners import make_runner, parse_options

    options = parse_options(args.runner_option, "--runner-option")
    if args.delegate:
        if args.runner != "local":
            raise NNSearchError(
                "--delegate is an option of the local runner; the adb runner takes delegate flags "
                "in its --runner-option command=... template"
            )
        options["delegate"] = args.delegate
        options["options"] = parse_options(args.delegate_option, "--delegate-option")  # type: ignore[assignment]
    elif args.delegate_option:
        raise NNSearchError("--delegate-option needs --delegate PATH")
    runner = make_runner(args.runner, options)
    agent = Agent(
        store,
        args.device,
        runner,
        name=args.name,
        lease_s=args.lease,
        poll_s=args.poll,
        runs=args.runs,
        warmup=args.warmup,
        repeat_probes=not args.no_repeat,
        log=lambda line: print(line, flush=True),
    )
    signal.signal(signal.SIGTERM, _interrupt)
    stopped = ""
    try:
        agent.run(max_jobs=args.max_jobs, idle_exit_s=args.idle_exit)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the normal way to stop an agent; its job went back to the queue
        stopped = "stopped; "
    stats = agent.stats
    print(
        f"agent {agent.name}: {stopped}{stats.done} done, {stats.failed} failed, {stats.lost} dropped (lease lost)",
        flush=True,
    )
    return 0


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def print_status(store, device: str | None) -> None:  # store: Store
    """Jobs per device and state, the agents, and how well each device's table predicts it."""
    for line in status_lines(store, device):
        print(line)


def status_lines(store, device: str | None) -> list[str]:  # store: Store
    """The lines of `nnsearch agent --status` (also printed by `nnsearch lut show --device`)."""
    from sqlalchemy import select

    from nnsearch.latency.accuracy import prediction_accuracy
    from nnsearch.latency.agents.jobs import STATES, job_counts, store_clock
    from nnsearch.store.schema import MeasureAgent

    counts = job_counts(store, device)
    query = select(MeasureAgent).order_by(MeasureAgent.device, MeasureAgent.name)
    if device:
        query = query.where(MeasureAgent.device == device)
    agents, now = store.reading(lambda conn: (conn.execute(query).all(), store_clock(conn)))
    devices = sorted(set(counts) | {a.device for a in agents} | ({device} if device else set()))
    if not devices:
        return [f"no measurement jobs or agents in {store.display_url}"]
    lines = []
    for name in devices:
        states = counts.get(name, dict.fromkeys(STATES, 0))
        lines.append(f"{name}: jobs " + ", ".join(f"{states[s]} {s}" for s in STATES))
        for agent in (a for a in agents if a.device == name):
            lines.append(
                f"    agent {agent.name} ({agent.runner}, {agent.runtime}, {agent.runtime_version}"
                f"{', ' + agent.delegate if agent.delegate else ''}): {agent.state}, "
                f"last seen {max(now - agent.seen_at, 0):.0f} s ago"
            )
        accuracy = prediction_accuracy(store, name)
        lines.append(
            f"    {accuracy.line()}"
            if accuracy
            else f"    {name}: no whole-model measurement paired with a prediction yet"
        )
        if accuracy and accuracy.warning():
            lines.append(f"    warning: {accuracy.warning()}")
    return lines


def register(sub: argparse._SubParsersAction) -> None:
    agent = sub.add_parser(
        "agent",
        help="serve a device profile's measurement jobs (or --status: show the queue)",
        description="Long-running: claims the device profile's measurement jobs (one-op probes "
        "and whole models) from the store under a lease, times them with the runner "
        "and writes the results back.",
    )
    agent.add_argument("--device", default=None, help="device profile name the agent serves (e.g. phone-x)")
    agent.add_argument(
        "--status",
        action="store_true",
        help="print queued/running/done/failed jobs per device, the agents and each device's "
        "prediction error, then exit",
    )
    agent.add_argument(
        "--runner",
        default="local",
        help="local (ai-edge-litert here), adb (a phone's benchmark_model) or a plugin "
        "'package.module:factory' (default local)",
    )
    agent.add_argument(
        "--runner-option",
        action="append",
        metavar="K=V",
        help="runner option, repeatable; adb: adb=PATH, serial=S, benchmark=PATH, remote_dir=DIR, "
        "command=TEMPLATE, runtime_version=V",
    )
    agent.add_argument(
        "--delegate",
        default=None,
        metavar="PATH",
        help="local runner: external TFLite delegate library (e.g. a board's NPU delegate)",
    )
    agent.add_argument("--delegate-option", action="append", metavar="K=V", help="delegate option, repeatable")
    agent.add_argument(
        "--lease",
        type=float,
        default=60.0,
        metavar="S",
        help="a job's lease: a killed agent's job goes to another after S seconds (default 60)",
    )
    agent.add_argument("--poll", type=float, default=2.0, metavar="S", help="seconds between looks at an empty queue")
    agent.add_argument("--runs", type=int, default=5, help="timed calls per job, more for short models (default 5)")
    agent.add_argument("--warmup", type=int, default=1, help="untimed calls before timing (default 1)")
    agent.add_argument(
        "--no-repeat", action="store_true", help="do not queue an interleaved repeat of each first probe timing"
    )
    agent.add_argument("--max-jobs", type=int, default=None, help="stop after N jobs (default: run until stopped)")
    agent.add_argument(
        "--idle-exit",
        type=float,
        default=None,
        metavar="S",
        help="stop once the queue has been empty for S seconds (default: run until stopped)",
    )
    agent.add_argument("--name", default=None, help="agent name (default DEVICE@HOST:PID)")
    add_db_option(agent)
    agent.set_defaults(handler=cmd_agent)
