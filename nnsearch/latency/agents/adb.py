"""The `adb` runner: push a .tflite file to a phone and time it with LiteRT's `benchmark_model` there.

The user installs `benchmark_model` on the phone (e.g. `/data/local/tmp/benchmark_model`,
built for the phone's ABI, with the delegates they want to use). For each job the
runner runs `push_command` then `command`, two templates with the fields
`{adb}`, `{serial}` (`-s SERIAL` or nothing), `{benchmark}`, `{local}`, `{remote}`,
`{threads}`, `{runs}` and `{warmup}`; each field is shell-quoted before the line is
split into arguments (no shell runs on this machine). Extra benchmark_model flags,
such as `--use_nnapi=true` or `--external_delegate_path=...`, go into the template.

`parse_benchmark_output` reads benchmark_model's summary: the last line
`count=N first=... curr=... min=... max=... avg=... std=...` (microseconds; the
first such line is the warm-up) gives min, max and the average, recorded as the
median (benchmark_model prints no median); without it, the line `Inference
timings in us: ... Inference (avg): X` gives the average alone.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

from nnsearch.latency.agents.interface import RunnerError, RunnerIdentity
from nnsearch.store.stat import LatencyStat

RUNTIME = "tflite-benchmark_model"
PUSH_COMMAND = "{adb} {serial} push {local} {remote}"
COMMAND = (
    "{adb} {serial} shell {benchmark} --graph={remote} --num_threads={threads} --num_runs={runs} --warmup_runs={warmup}"
)
_COUNT_LINE = re.compile(r"count=(\d+)\b.*?\bmin=([\d.]+)\b.*?\bmax=([\d.]+)\b.*?\bavg=([\d.eE+-]+)")
_AVERAGE_LINE = re.compile(r"Inference \(avg\):\s*([\d.eE+-]+)")


def parse_benchmark_output(output: str) -> LatencyStat:
    """The timing in benchmark_model's output (see the module docstring); RunnerError if it holds none."""
    counts = _COUNT_LINE.findall(output)
    if counts:
        runs, low, high, average = counts[-1]
        return LatencyStat(
            median_ms=float(average) / 1e3, min_ms=float(low) / 1e3, max_ms=float(high) / 1e3, runs=int(runs)
        )
    averages = _AVERAGE_LINE.findall(output)
    if averages:
        return LatencyStat(median_ms=float(averages[-1]) / 1e3, runs=1)
    raise RunnerError(f"benchmark_model printed no timing (no 'count=... avg=...' line): {_tail(output)}")


def _tail(output: str, lines: int = 8) -> str:
    return " | ".join(line.strip() for line in output.strip().splitlines()[-lines:]) or "(no output)"


class AdbRunner:
    """Times models on an adb-connected phone with its `benchmark_model` (see the module docstring)."""

    name = "adb"

    def __init__(
        self,
        adb: str = "adb",
        serial: str | None = None,
        benchmark: str = "/data/local/tmp/benchmark_model",
        remote_dir: str = "/data/local/tmp/nnsearch",
        command: str = COMMAND,
        push_command: str = PUSH_COMMAND,
        runtime_version: str = "unspecified",
        timeout_s: str | float = 600,
    ) -> None:
        self.adb, self.serial, self.benchmark, self.remote_dir = adb, serial, benchmark, remote_dir.rstrip("/")
        self.command, self.push_command = command, push_command
        self.runtime_version = runtime_version
        self.timeout_s = float(timeout_s)
        self._check_template(command)
        self._check_template(push_command)

    def identity(self) -> RunnerIdentity:
        options = (("command", self.command), ("serial", self.serial or ""))
        return RunnerIdentity(RUNTIME, self.runtime_version, None, options)

    def time(self, path: Path, threads: int, runs: int, warmup: int) -> LatencyStat:
        fields = dict(
            local=str(path), remote=f"{self.remote_dir}/{Path(path).name}", threads=threads, runs=runs, warmup=warmup
        )
        self._run(self.push_command, fields, "push")
        return parse_benchmark_output(self._run(self.command, fields, "benchmark_model"))

    def _arguments(self, template: str, fields: dict[str, object]) -> list[str]:
        values = dict(
            adb=self.adb,
            serial="" if not self.serial else f"-s {shlex.quote(self.serial)}",
            benchmark=self.benchmark,
            **fields,
        )
        quoted = {k: v if k == "serial" else shlex.quote(str(v)) for k, v in values.items()}
        return shlex.split(template.format(**quoted))

    def _run(self, template: str, fields: dict[str, object], what: str) -> str:
        arguments = self._arguments(template, fields)
        try:
            done = subprocess.run(arguments, capture_output=True, text=True, timeout=self.timeout_s)
        except FileNotFoundError:
            raise RunnerError(f"{what}: cannot run {arguments[0]!r} (not found); set the adb path") from None
        except subprocess.TimeoutExpired:
            raise RunnerError(f"{what}: `{shlex.join(arguments)}` did not finish in {self.timeout_s:g} s") from None
        output = done.stdout + done.stderr
        if done.returncode != 0:
            raise RunnerError(f"{what} failed (exit {done.returncode}): {_tail(output)}")
        return output

    def _check_template(self, template: str) -> None:
        try:
            self._arguments(template, dict(local="a", remote="b", threads=1, runs=1, warmup=0))
        except (KeyError, IndexError, ValueError) as exc:
            raise RunnerError(
                f"adb command template {template!r} is not usable ({exc}); fields: {{adb}}, "
                "{serial}, {benchmark}, {local}, {remote}, {threads}, {runs}, {warmup}"
            ) from None
