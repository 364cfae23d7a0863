"""The ``dynpipe`` command run as a subprocess against a real store filled by real runs."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import pytest

from dynpipe import pipeline, step

CLI = [sys.executable, "-m", "dynpipe.cli"]
TERMINAL_CONTROLS = ("\x1b", "\x07", "\r", "\x9b")


def dynpipe(*args: str, check: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([*CLI, *args], check=False, capture_output=True, text=True, timeout=120, env=env)
    if check:
        assert done.returncode == 0, done.stderr
    return done


def sh(command: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``command`` run by bash with pipefail, so a pipeline's status is its first failure's."""
    return subprocess.run(
        ["bash", "-o", "pipefail", "-c", command], check=False, capture_output=True, text=True, timeout=120,
        env=env, cwd=cwd,
    )


def run_id_shown(output: str) -> str:
    return next(line.split()[1] for line in output.splitlines() if line.startswith("id "))


def test_control_characters_in_names_are_shown_escaped_not_sent_to_the_terminal() -> None:
    @step(name="clear\x1b[2J", enable_cache=False)
    def painter(text: str) -> Annotated[str, "colour\x1b[31m"]:
        return text

    @step(name="title\x1b]0;pwned\x07", enable_cache=False)
    def breaker(text: str) -> None:
        raise ValueError(f"bad value \x1b[2J{text}\r")

    @pipeline(dynamic=True, name="evil\x1b[2J", run_name="run\x1b]0;title\x07-{run_id}",
              execution_mode="continue_on_failure")
    def evil(text: str = "\x1b[5mblink") -> None:
        painter(text)
        breaker(text)

    with pytest.raises(ValueError, match="bad value"):
        evil(text="\x1b[5mblink")
    outputs = [
        dynpipe("runs", "list").stdout,
        dynpipe("runs", "show", "latest").stdout,
        dynpipe("runs", "show", "evil\x1b[2J").stdout,
        dynpipe("pipelines", "list").stdout,
        dynpipe("artifacts", "list").stdout,
        dynpipe("artifacts", "list", "--run", "latest", "--step", "clear\x1b[2J").stdout,
        dynpipe("artifacts", "show", "colour\x1b[31m").stdout,
    ]
    missing = dynpipe("runs", "show", "gone\x1b[2J\r", check=False)
    no_step = dynpipe("runs", "logs", "latest", "nope\x1b]0;x\x07", check=False)
    assert missing.returncode == 1 and no_step.returncode == 1
    for text in [*outputs, missing.stderr, no_step.stderr]:
        assert not [c for c in TERMINAL_CONTROLS if c in text], text
    listed, shown = outputs[0], outputs[1]
    assert "run\\x1b]0;title\\x07-" in listed and "evil\\x1b[2J" in listed
    assert "clear\\x1b[2J" in shown and "title\\x1b]0;pwned\\x07" in shown
    assert "bad value \\x1b[2J\\x1b[5mblink\\r" in shown  # the step's error
    assert "text='\\x1b[5mblink'" in shown  # the run's parameters
    assert "colour\\x1b[31m" in outputs[4] and "colour\\x1b[31m" in outputs[5]
    assert "gone\\x1b[2J\\r" in missing.stderr and "nope\\x1b]0;x\\x07" in no_step.stderr


def test_runs_show_takes_a_name_id_prefix_pipeline_or_latest() -> None:
    @step(enable_cache=False)
    def one() -> int:
        return 1

    @pipeline(dynamic=True, run_name="alpha-{run_id}")
    def alpha() -> None:
        one()

    @pipeline(dynamic=True, run_name="beta-{run_id}")
    def beta() -> None:
        one()

    first_alpha, last_alpha = alpha(), alpha()
    only_beta = beta()
    assert run_id_shown(dynpipe("runs", "show", first_alpha.name).stdout) == first_alpha.id
    assert run_id_shown(dynpipe("runs", "show", first_alpha.id).stdout) == first_alpha.id
    assert run_id_shown(dynpipe("runs", "show", last_alpha.id[:10]).stdout) == last_alpha.id
    assert run_id_shown(dynpipe("runs", "show", "alpha").stdout) == last_alpha.id  # the pipeline's latest
    assert run_id_shown(dynpipe("runs", "show", "latest").stdout) == only_beta.id
    assert run_id_shown(dynpipe("runs", "show", "bet").stdout) == only_beta.id  # unique name prefix
    assert dynpipe("runs", "logs", "alpha", "one").returncode == 0

    several = dynpipe("runs", "show", "alpha-", check=False)
    assert several.returncode == 1
    assert "'alpha-' is ambiguous" in several.stderr and "2 runs" in several.stderr
    assert first_alpha.name in several.stderr and last_alpha.name in several.stderr
    none = dynpipe("runs", "show", "gamma", check=False)
    assert none.returncode == 1 and "no pipeline run matches 'gamma'" in none.stderr
    assert "Traceback" not in several.stderr + none.stderr


def test_a_run_reference_is_a_prefix_not_a_pattern() -> None:
    @pipeline(dynamic=True)
    def lonely() -> None:
        pass

    lonely()  # the only run: a LIKE pattern such as "_" or "%" would match its id
    for pattern in ("_", "%"):
        shown = dynpipe("runs", "show", pattern, check=False)
        assert shown.returncode == 1 and f"no pipeline run matches '{pattern}'" in shown.stderr


def test_runs_show_abbreviates_a_wide_fan_in() -> None:
    @step(enable_cache=False)
    def fetch() -> int:
        return 1

    @step(enable_cache=False)
    def parse(x: int, i: int) -> int:
        return x + i

    @step(enable_cache=False)
    def combine(parts: list[int]) -> int:
        return sum(parts)

    @pipeline(dynamic=True)
    def wide() -> None:
        data = fetch()
        combine([parse.submit(data, i) for i in range(300)])

    run = wide()
    assert len(run.steps["combine"].upstream) == 300
    shown = dynpipe("runs", "show", run.name).stdout
    assert max(len(line) for line in shown.splitlines()) < 250
    combine_row = next(line for line in shown.splitlines() if line.startswith("combine "))
    assert "parse, parse_2" in combine_row and "more" in combine_row
    hidden = int(combine_row.split("+")[1].split()[0])
    assert 280 <= hidden < 300  # a few names shown, the rest counted


def test_artifacts_list_is_newest_first_with_producer_and_filters() -> None:
    @step
    def make(n: int) -> Annotated[int, "number"]:
        return n

    @step
    def double(x: int) -> Annotated[int, "doubled"]:
        return 2 * x

    @pipeline(dynamic=True)
    def numbers(n: int) -> None:
        double(make(n))

    first = numbers(1)
    second = numbers(2)
    cached = numbers(1)  # every step a cache hit: its outputs were produced by the first run
    lines = dynpipe("artifacts", "list").stdout.splitlines()
    assert lines[0].split() == ["ARTIFACT", "VERSION", "TYPE", "SIZE", "RUN", "STEP", "CREATED", "ID"]
    assert [line.split()[:2] + line.split()[4:6] for line in lines[1:]] == [
        ["doubled", "2", second.name, "double"],
        ["number", "2", second.name, "make"],
        ["doubled", "1", first.name, "double"],
        ["number", "1", first.name, "make"],
    ]
    assert len(dynpipe("artifacts", "list", "--limit", "1").stdout.splitlines()) == 2
    limited = dynpipe("artifacts", "list", "--limit", "3")
    assert len(limited.stdout.splitlines()) == 4 and "--limit 0" in limited.stderr
    by_run = dynpipe("artifacts", "list", "--run", cached.name).stdout.splitlines()[1:]
    assert sorted(line.split()[0] + "@" + line.split()[4] for line in by_run) == [
        f"doubled@{first.name}", f"number@{first.name}",
    ]
    by_step = dynpipe("artifacts", "list", "--step", "make").stdout.splitlines()[1:]
    assert [line.split()[:2] for line in by_step] == [["number", "2"], ["number", "1"]]
    one = dynpipe("artifacts", "list", "--run", second.name, "--step", "double").stdout.splitlines()[1:]
    assert [line.split()[:2] for line in one] == [["doubled", "2"]]
    negative = dynpipe("artifacts", "list", "--limit", "-3", check=False)
    assert negative.returncode == 2 and "argument --limit: expects a whole number of rows" in negative.stderr
    bad = dynpipe("artifacts", "list", "--run", second.name, "--step", "triple", check=False)
    assert bad.returncode == 1 and "no step 'triple'" in bad.stderr and "make" in bad.stderr


def test_piping_into_head_exits_quietly_with_status_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DYNPIPE_ECHO_LOGS", "false")

    @step(enable_cache=False)
    def chatty() -> None:
        for i in range(40_000):  # ~2 MB of logs: far more than a pipe holds, so the writer must hit EPIPE
            print(f"line {i:06d} " + "x" * 40)

    @pipeline(dynamic=True)
    def noisy() -> None:
        chatty()

    noisy()
    command = shlex.join([*CLI, "runs", "logs", "latest", "chatty"]) + " | head -n 1"
    done = sh(command)
    assert (done.returncode, done.stderr, done.stdout) == (0, "", "line 000000 " + "x" * 40 + "\n")
    command = shlex.join([*CLI, "runs", "list", "--limit", "0"]) + " | head -c 1"
    done = sh(command)
    assert (done.returncode, done.stderr) == (0, "")


def test_demo_hint_works_without_dynpipe_on_path(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": "/usr/bin:/bin"}
    env.pop("DYNPIPE_CLI", None)
    demo = dynpipe("demo", "--steps", "2", env=env).stdout
    hint = next(line for line in demo.splitlines() if line.startswith("inspect it with:"))
    command = hint.removeprefix("inspect it with:").split("|")[0].strip()
    assert command.endswith(" runs list") and not command.startswith("dynpipe ")
    listed = sh(f"{command} --all", env=env, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert [line.split()[1] for line in listed.stdout.splitlines()[1:]] == ["demo_search", "demo_search"]
    shown = sh(hint.split("|")[2].strip(), env=env, cwd=tmp_path)
    # the latest run was all cache hits: its train_2 shows the logs of the run that computed it
    assert shown.returncode == 0 and shown.stdout.startswith("lr=0.2 score="), shown.stderr
    assert "train_2 was a cache hit" in shown.stderr


def test_demo_hint_uses_the_command_dev_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    from dynpipe.demo import cli_command

    monkeypatch.setenv("DYNPIPE_CLI", "./dev dynpipe")
    assert cli_command() == "./dev dynpipe"
    monkeypatch.delenv("DYNPIPE_CLI")
    monkeypatch.setenv("PATH", "")
    monkeypatch.setattr(sys, "executable", "/nowhere/bin/python")
    assert cli_command() == "/nowhere/bin/python -m dynpipe.cli"


def test_version_is_the_installed_package_version() -> None:
    from importlib.metadata import version

    out = subprocess.run(
        [sys.executable, "-m", "dynpipe.cli", "--version"], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == f"dynpipe {version('dynpipe')}"


def test_runs_list_shows_active_time_apart_from_how_long_the_run_was_open() -> None:
    import time

    from dynpipe import Client

    @step(enable_cache=False)
    def quick(i: int) -> int:
        return i

    @pipeline(dynamic=True)
    def idle_between() -> None:
        quick(1)
        time.sleep(1.5)  # the run is open, no step runs (a notebook between cells)
        quick(2)

    idle_between()
    run = Client().get_pipeline("idle_between").last_run
    assert run.duration is not None and run.active_duration is not None
    assert run.duration - run.active_duration >= 1.5  # the idle gap is not active time
    header, row = dynpipe("runs", "list", "--pipeline", "idle_between").stdout.strip().splitlines()
    assert header.split()[4:6] == ["ACTIVE", "OPEN"]


ORIGIN_SCRIPT = '''
from dynpipe import pipeline, step

@step(enable_cache=False)
def one() -> int:
    return 1

@pipeline(dynamic=True)
def {name}() -> None:
    one()

if __name__ == "__main__":
    {name}()
'''


def test_runs_list_shows_the_script_or_schedule_a_run_came_from(tmp_path: Path) -> None:
    from dynpipe.schedule.runner import run_command

    folder = tmp_path / "a folder with a rather long name to be shortened"
    folder.mkdir()
    script = folder / "nightly_origin.py"
    script.write_text(ORIGIN_SCRIPT.format(name="from_script"))
    # sys.argv[0] as the user gave it: a relative path stays relative, a long one keeps its basename
    subprocess.run([sys.executable, script.name], cwd=folder, check=True, timeout=120)
    dynpipe("run", str(script))  # dynpipe run: the module it was given, not the dynpipe command
    (tmp_path / "by_schedule.py").write_text(ORIGIN_SCRIPT.format(name="by_schedule"))
    command = run_command("by_schedule.py:by_schedule", [], "fired-{time}", schedule="hourly")
    subprocess.run(command, check=True, timeout=120, capture_output=True)
    header, *rows = dynpipe("runs", "list").stdout.strip().splitlines()
    assert header.split()[-1] == "ORIGIN"
    origins = [row.split("  ")[-1].strip() for row in rows]  # newest first
    assert origins == ["schedule:hourly", "…/nightly_origin.py", "nightly_origin.py"]
    shown = dynpipe("runs", "show", "from_script").stdout
    assert f"origin    {script}\n" in shown


def test_runs_list_reads_pages_of_the_store_past_the_first_and_honours_limit() -> None:
    import uuid

    from dynpipe.status import ExecutionStatus
    from dynpipe.store.store import open_store

    md = open_store().metadata
    ids = [uuid.uuid4().hex for _ in range(503)]  # more than one 500-run page of the store
    for i, run_id in enumerate(ids):
        md.create_run(run_id, f"bulk-{i:03d}", "bulk", {})
        md.finish_run(run_id, ExecutionStatus.COMPLETED)
    rows = dynpipe("runs", "list", "--limit", "0").stdout.strip().splitlines()[1:]
    assert [row.split()[0] for row in rows] == [f"bulk-{i:03d}" for i in reversed(range(503))]
    assert all(" no steps " in row for row in rows)
    three = dynpipe("runs", "list", "--limit", "3", "--status", "completed").stdout.strip().splitlines()[1:]
    assert [row.split()[0] for row in three] == ["bulk-502", "bulk-501", "bulk-500"]
