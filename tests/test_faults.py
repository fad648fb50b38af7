"""Fault-injection harness: the real ``ssl`` CLI driven through classes of bad input and faults.

Each case is one fault (an odd argument, file, folder or path; a signal at a phase of a run;
a plugin failing at import, at registration or in a hook; a broken store) and checks what a
user would: the exit code, one ``error:`` line and no traceback, nothing half-written in the
run directory, and no MLflow run left RUNNING. Argument and plugin cases call
:func:`ssl_core.cli.main` in this process (as the console script does); cases about signals
start real ``python -m ssl_core run`` processes, with the misbehaving plugin
``tests/fault_plugin.py`` installed through an entry point, and kill them. The processes are
started once, park at their fault point, and are signalled when their case runs.

``python tests/test_faults.py`` runs the harness; ``--list`` prints the cases. The summary
line ``fault harness: N/M cases passed`` ends the run.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ssl_core import hookimpl

TESTS = Path(__file__).resolve().parent

#: A run of a few seconds: 16 px, batch 4, tiny heads, 12 training images (3 steps an epoch).
TINY = [
    "method=byol",
    "backbone=test_resnet",
    "data=synthetic",
    "data.num_samples=16",
    "data.image_size=16",
    "augment=kornia",
    "trainer.batch_size=4",
    "trainer.epochs=1",
    "trainer.num_workers=0",
    "trainer.log_every=1",
    "eval.knn=false",
    "eval.knn_every=0",
    "optim.warmup_epochs=0",
    "byol.proj_hidden_dim=16",
    "byol.proj_dim=8",
    "byol.pred_hidden_dim=16",
]

#: Line prefixes a failed command may print besides its one ``error:`` line.
ALLOWED = ("error:", "warning:", "note:", "sweep:", "scanning ")


# --- the case table ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    group: str
    description: str
    check: Callable[[Any], None]


CASES: dict[str, Case] = {}
RESULTS: dict[str, bool] = {}


def case(group: str, description: str) -> Callable[[Callable[[Any], None]], Callable]:
    def register(check: Callable[[Any], None]) -> Callable[[Any], None]:
        CASES[check.__name__.removeprefix("case_")] = Case(group, description, check)
        return check

    return register


# --- running the CLI ----------------------------------------------------------------------------


@dataclass
class Result:
    code: int
    out: str
    err: str

    def error(self, code: int) -> str:
        """The one ``error:`` line of a command that exited with ``code``, no traceback."""
        assert self.code == code, f"exit {self.code}, expected {code}:\n{self.err[-3000:]}"
        assert "Traceback" not in self.err, self.err[-3000:]
        errors = [line for line in self.err.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, self.err[-3000:]
        return errors[0]

    def before_any_work(self) -> str:
        """Exit 2, one line, and nothing but that line and warnings or notes on stderr."""
        line = self.error(2)
        stray = [x for x in self.err.splitlines() if x.strip() and not x.startswith(ALLOWED)]
        assert stray == [], self.err
        return line


def cli(*argv: str, plugins: list[tuple[str, object]] | None = None) -> Result:
    """``ssl ARGV`` in this process, as the console script runs it (``extra`` plugins added)."""
    from ssl_core import cli as cli_module
    from ssl_core.plugins import get_plugins

    out, err = io.StringIO(), io.StringIO()
    patch = pytest.MonkeyPatch()
    if plugins:
        patch.setattr(cli_module, "_load_plugins", lambda: get_plugins(extra=plugins))
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = cli_module.main(list(argv))
            except SystemExit as exc:  # argparse
                code = exc.code if isinstance(exc.code, int) else 1
    finally:
        patch.undo()
    return Result(int(code), out.getvalue(), err.getvalue())


def snapshot(path: Path) -> dict[str, tuple[int, int]] | None:
    """Every file under ``path`` with its size and modification time (None: no such path)."""
    path = Path(path)
    if not path.exists():
        return None
    if path.is_file():
        stat = path.stat()
        return {".": (stat.st_size, stat.st_mtime_ns)}
    found = {}
    for item in sorted(path.rglob("*")):
        if item.is_file():
            stat = item.stat()
            found[item.relative_to(path).as_posix()] = (stat.st_size, stat.st_mtime_ns)
    return found


def mlflow_runs(uri: str) -> list[Any]:
    """Every run of every experiment in the store (none when its file does not exist)."""
    from mlflow.tracking import MlflowClient

    from ssl_core.experiments.store import sqlite_path

    path = sqlite_path(uri)
    if path is not None and not path.is_file():
        return []
    client = MlflowClient(tracking_uri=uri)
    ids = [e.experiment_id for e in client.search_experiments()]
    return list(client.search_runs(ids, max_results=1000)) if ids else []


def statuses(uri: str) -> dict[str, str]:
    return {run.info.run_id: run.info.status for run in mlflow_runs(uri)}


def loss_steps(uri: str, run_id: str) -> list[int]:
    from mlflow.tracking import MlflowClient

    return sorted(m.step for m in MlflowClient(tracking_uri=uri).get_metric_history(run_id, "loss"))


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError):
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
        return state != "Z"
    return True


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


# --- real processes -----------------------------------------------------------------------------


class Proc:
    """A ``python -m ssl_core run ...`` process whose output is read as it comes."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "ssl_core", "run", *args],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self.changed = threading.Condition()
        self.readers = [
            threading.Thread(target=self._read, args=(stream,), daemon=True)
            for stream in (self.popen.stdout, self.popen.stderr)
        ]
        for reader in self.readers:
            reader.start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            with self.changed:
                self.lines.append(line.rstrip("\n"))
                self.changed.notify_all()
        with self.changed:
            self.changed.notify_all()

    @property
    def text(self) -> str:
        with self.changed:
            return "\n".join(self.lines)

    def wait_for(self, prefix: str, timeout: float = 300) -> None:
        end = time.monotonic() + timeout
        with self.changed:
            while not any(line.startswith(prefix) for line in self.lines):
                if self.popen.poll() is not None and not any(r.is_alive() for r in self.readers):
                    pytest.fail(f"ended before '{prefix}':\n" + "\n".join(self.lines[-40:]))
                if time.monotonic() > end:
                    pytest.fail(f"no '{prefix}' in {timeout} s:\n" + "\n".join(self.lines[-40:]))
                self.changed.wait(0.5)

    def finish(self, timeout: float = 300) -> Result:
        try:
            code = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            pytest.fail("the process did not end:\n" + self.text[-3000:])
        for reader in self.readers:
            reader.join(10)
        return Result(code, "", self.text)


def install_fault_plugin(site: Path) -> None:
    """``tests/fault_plugin.py`` as an installed distribution with an ``ssl_core`` entry point."""
    info = site / "ssl_fault_plugin-0.1.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ssl-fault-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[ssl_core]\nfault = fault_plugin:Fault\n")


class Harness:
    """The module's folders, its MLflow store, and the processes the signal cases kill."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.uri = f"sqlite:///{root}/mlflow.db"
        self.site = root / "site"
        install_fault_plugin(self.site)
        self.procs: dict[str, Proc] = {}
        self.release: dict[str, Path] = {}
        self._finished: dict[str, Path] = {}

    def args(self, name: str, *extra: str, uri: str | None = None) -> list[str]:
        folder = "data=folder" in extra  # synthetic data's options do not apply
        return [
            *(a for a in TINY if not (folder and a.startswith("data.num_samples="))),
            f"tracking.uri={uri or self.uri}",
            "tracking.experiment=faults",
            f"output_dir={self.root / name}",
            *extra,
        ]

    def start(self, name: str, fault: str, *extra: str) -> None:
        """A process running ``extra`` with ``SSL_FAULT=fault``, its own store and folder."""
        self.release[name] = self.root / f"{name}.release"
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                [str(self.site), str(TESTS), os.environ.get("PYTHONPATH", "")]
            ),
            "PYTHONUNBUFFERED": "1",
            "OMP_NUM_THREADS": "1",
            "SSL_FAULT": fault,
            "SSL_FAULT_RELEASE": str(self.release[name]),
        }
        uri = f"sqlite:///{self.root}/{name}.db"
        self.procs[name] = Proc(self.args(name, *extra, uri=uri), self.root, env)

    def proc_uri(self, name: str) -> str:
        return f"sqlite:///{self.root}/{name}.db"

    def finished(self, name: str, *extra: str) -> Path:
        """The directory of a finished run (made once, in this process)."""
        if name not in self._finished:
            result = cli("run", *self.args(name, *extra))
            assert result.code == 0, result.err[-3000:]
            self._finished[name] = self.root / name
        return self._finished[name]

    def no_running(self, uri: str | None = None) -> None:
        running = [i for i, s in statuses(uri or self.uri).items() if s == "RUNNING"]
        assert running == [], f"runs left RUNNING: {running}"


@pytest.fixture(scope="module")
def h(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Harness]:
    harness = Harness(tmp_path_factory.mktemp("faults"))
    # The processes of the signal cases start now and park at their fault point (a plugin
    # sleeping until released): their start-up overlaps the in-process cases.
    harness.start("owned", "ssl_step_end:sleep:2", "trainer.epochs=3")
    harness.start("setup_term", "ssl_build_dataset:sleep")
    harness.start("ending", "ssl_run_end:sleep")
    ddp = ("data.num_samples=64", "trainer.epochs=1000", "trainer.devices=2", "trainer.device=cpu")
    harness.start("ddp_term", "ssl_step_end:sleep:2", *ddp)
    harness.start("ddp_kill", "ssl_step_end:sleep:2", *ddp)
    yield harness
    for name, proc in harness.procs.items():
        harness.release[name].touch()
        if proc.popen.poll() is None:
            proc.popen.kill()
        proc.popen.wait()
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    passed = sum(RESULTS.values())
    line = f"fault harness: {passed}/{len(RESULTS)} cases passed"
    failed = sorted(k for k, ok in RESULTS.items() if not ok)
    if failed:
        line += " (failed: " + ", ".join(failed) + ")"
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        if reporter is not None:
            reporter.ensure_newline()
            reporter.write_line(line)
        else:
            print(line, file=sys.stderr)


# --- arguments and config: exit 2 before any work -------------------------------------------


def refused(h: Harness, name: str, *extra: str, drop: str | None = None) -> str:
    """Run with ``extra``; assert exit 2, one line, no run directory and no MLflow run."""
    before = statuses(h.uri)
    args = [a for a in h.args(name, *extra) if drop is None or not a.startswith(drop)]
    line = cli("run", *args).before_any_work()
    assert statuses(h.uri) == before
    return line


@case("arguments", "output_dir is an existing file")
def case_output_dir_is_a_file(h: Harness) -> None:
    target = h.root / "a-file"
    target.write_text("mine")
    line = refused(h, "a-file")
    assert "is a file, not a folder" in line and target.read_text() == "mine"


@case("arguments", "output_dir below an existing file")
def case_output_dir_inside_a_file(h: Harness) -> None:
    (h.root / "plain").write_text("x")
    assert "is a file, not a folder" in refused(h, "plain/run")


@case("arguments", "output_dir where nothing can be written (/proc)")
def case_output_dir_not_writable(h: Harness) -> None:
    line = cli("run", *h.args("x", "output_dir=/proc/ssl-faults/run")).before_any_work()
    assert "cannot write in output_dir=/proc/ssl-faults/run" in line


@case("arguments", "a run name too long for the default run directory")
def case_run_name_too_long(h: Harness) -> None:
    line = refused(h, "unused", "tracking.run_name=" + "n" * 300, drop="output_dir=")
    assert "is 300 bytes" in line and "tracking.run_name" in line
    assert not (Path.cwd() / "runs").exists()


@case("arguments", "a seed beyond 64 bits")
def case_seed_beyond_64_bits(h: Harness) -> None:
    line = refused(h, "seed", f"trainer.seed={2**64}")
    assert (
        line
        == "error: trainer.seed=18446744073709551616 is out of range; must be in [0, 18446744073709551615]"
    )


@case("arguments", "a negative seed")
def case_negative_seed(h: Harness) -> None:
    assert "trainer.seed=-1 is out of range" in refused(h, "seed", "trainer.seed=-1")


@case("arguments", "optim.lr=nan")
def case_nan_learning_rate(h: Harness) -> None:
    assert "optim.lr=nan is not a number in range" in refused(h, "nan", "optim.lr=nan")


@case("arguments", "byol.tau_base=nan is named, not the learning rate")
def case_nan_tau_named(h: Harness) -> None:
    line = refused(h, "nan", "byol.tau_base=nan")
    assert "byol.tau_base=nan" in line and "optim.lr" not in line


@case("arguments", "optim.weight_decay=inf")
def case_inf_weight_decay(h: Harness) -> None:
    assert "optim.weight_decay=inf" in refused(h, "inf", "optim.weight_decay=inf")


@case("arguments", "trainer.devices beyond what the machine has")
def case_devices_beyond_the_machine(h: Harness) -> None:
    line = refused(h, "devices", "trainer.devices=4096", "trainer.device=cpu")
    assert "trainer.devices=4096 but this machine has" in line


@case("arguments", "a sweep of 10^6 combinations is counted and refused at once")
def case_sweep_too_large(h: Harness) -> None:
    values = ",".join(str(v) for v in range(1, 101))
    swept = [f"optim.lr={values}", f"trainer.seed={values}", f"byol.tau_base={values}"]
    result = cli("run", "--multirun", *h.args("sweep", *swept))
    assert "the sweep has 1000000 runs (100 x 100 x 100)" in result.before_any_work()
    assert "--max-runs 1000000" in result.err


@case("arguments", "a sweep states its count; --max-runs bounds it")
def case_sweep_counted_and_bounded(h: Harness) -> None:
    swept = ["optim.lr=0.1,0.2,0.3", "byol.tau_base=0.9,0.99,0.996"]
    assert (
        "(3 x 3)"
        in cli("run", "--multirun", "--max-runs", "4", *h.args("s", *swept)).before_any_work()
    )
    result = cli("run", "--multirun", "--max-runs", "9", "--print-config", *h.args("s", *swept))
    assert result.code == 0 and result.out.count("# run ") == 9
    assert "sweep: 9 runs (3 x 3)" in result.err


@case("arguments", "a method and a view generator that declare different view counts")
def case_views_declared_mismatch(h: Harness) -> None:
    line = refused(h, "views", "augment=multicrop")
    assert "method=byol takes 2 views per image but augment=multicrop makes" in line


@case("arguments", "a view generator that does not declare its views makes too many")
def case_views_undeclared_mismatch(h: Harness) -> None:
    before = statuses(h.uri)
    result = cli("run", *h.args("views3", "augment=three_views"), plugins=[("three", ThreeViews())])
    line = result.before_any_work()
    assert "method=byol takes 2 views per image but augment=three_views made 3" in line
    assert statuses(h.uri) == before and not (h.root / "views3").exists()


@case("arguments", "an argument without '='")
def case_argument_without_value(h: Harness) -> None:
    assert "expected key=value" in refused(h, "kv", "trainer.epochs")


@case("arguments", "resume= a path that does not exist")
def case_resume_missing_path(h: Harness) -> None:
    assert "does not exist" in refused(h, "resume", f"resume={h.root}/nothing.pt")


# --- files and folders ------------------------------------------------------------------------


@case("files", "a pipe named like an image and a link leading out: skipped, never opened")
def case_pipe_and_link_out_of_the_folder(h: Harness) -> None:
    from PIL import Image

    images = h.root / "images"
    for i in range(16):
        (images / f"c{i % 2}").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (12, 12), (16 * i, 0, 0)).save(images / f"c{i % 2}" / f"{i}.png")
    os.mkfifo(images / "c0" / "pipe.png")
    Image.new("RGB", (12, 12)).save(h.root / "outside.png")
    (images / "c1" / "out.png").symlink_to(h.root / "outside.png")
    previous = signal.signal(signal.SIGALRM, lambda *_: pytest.fail("the run blocked"))
    signal.alarm(300)
    try:
        result = cli(
            "run", *h.args("pipe", "data=folder", f"data.path={images}", "trainer.max_steps=1")
        )
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert result.code == 0, result.err[-3000:]
    (warning,) = [x for x in result.err.splitlines() if x.startswith("warning: skipped")]
    assert "1 symlink leading outside the folder" in warning and "1 special file" in warning


@case("files", "data.path=/proc: links out of the folder are not followed")
def case_data_path_proc(h: Harness) -> None:
    line = refused(h, "proc", "data=folder", "data.path=/proc")
    assert "no images found under data.path=/proc" in line and "symlinks leading outside" in line


@case(
    "files",
    "files are written with the permissions the umask gives (run, MLflow artifacts, export, plot)",
)
def case_umask_respected(h: Harness) -> None:
    from mlflow.tracking import MlflowClient

    before = os.umask(0o002)
    try:
        run_dir = h.finished("umask", "tracking.experiment=umask")
        out = h.root / "umask-export" / "enc.safetensors"
        assert cli("export", f"run={run_dir}", f"out={out}").code == 0
        plot = h.root / "umask-plot.png"
        assert (
            cli(
                "compare", "experiment=umask", f"tracking.uri={h.uri}", "--csv", "--plot", str(plot)
            ).code
            == 0
        )
    finally:
        os.umask(before)
    run_id = json.loads((run_dir / "run.json").read_text())["mlflow_run_id"]
    artifacts = Path(
        MlflowClient(tracking_uri=h.uri).get_run(run_id).info.artifact_uri.removeprefix("file://")
    )
    files = [p for p in [*run_dir.rglob("*"), *artifacts.rglob("*"), out, plot] if p.is_file()]
    assert len(files) >= 10
    modes = {p.as_posix(): oct(p.stat().st_mode & 0o777) for p in files}
    assert {k: v for k, v in modes.items() if v != "0o664"} == {}


# --- checkpoints and resuming -----------------------------------------------------------------


def tampered(h: Harness, name: str, change: Callable[[dict], None]) -> Path:
    import torch

    source = h.finished("base") / "checkpoint.pt"
    state = torch.load(source, weights_only=True)
    change(state)
    path = h.root / f"{name}.pt"
    torch.save(state, path)
    return path


@case("checkpoints", "a tagged checkpoint without model weights")
def case_checkpoint_without_model(h: Harness) -> None:
    path = tampered(h, "nomodel", lambda s: s.pop("model"))
    line = refused(h, "tamper", f"resume={path}")
    assert "has the ssl_core tag but is malformed: no model weights" in line


@case("checkpoints", "a tagged checkpoint whose step is not a number")
def case_checkpoint_bad_step(h: Harness) -> None:
    path = tampered(h, "badstep", lambda s: s.update(step="seven"))
    assert "'step' is 'seven', not a count" in refused(h, "tamper", f"resume={path}")


@case("checkpoints", "a tagged checkpoint whose config is not YAML")
def case_checkpoint_bad_config(h: Harness) -> None:
    path = tampered(h, "badconfig", lambda s: s.update(config="[unclosed"))
    assert "its config is not YAML" in refused(h, "tamper", f"resume={path}")


@case("checkpoints", "a tagged checkpoint without its random state")
def case_checkpoint_without_rng(h: Harness) -> None:
    def drop(state: dict) -> None:
        state.pop("rng")
        state.pop("rng_ranks")

    path = tampered(h, "norng", drop)
    assert "no complete random state" in refused(h, "tamper", f"resume={path}")


@case("checkpoints", "ssl eval of a malformed checkpoint")
def case_eval_malformed_checkpoint(h: Harness) -> None:
    path = tampered(h, "nomodel2", lambda s: s.update(model={}))
    line = cli("eval", "knn", f"run={path}", f"tracking.uri={h.uri}").before_any_work()
    assert "malformed" in line


@case("checkpoints", "resume.force=true with another backbone changes nothing in the run")
def case_forced_resume_other_backbone(h: Harness) -> None:
    run_dir = h.finished("base")
    before, runs = snapshot(run_dir), statuses(h.uri)
    args = h.args("base", "resume=auto", "resume.force=true", "backbone=resnet18")
    line = cli("run", *args).before_any_work()
    assert "its weights do not fit this run's model" in line and "resume.force=true" in line
    assert snapshot(run_dir) == before and statuses(h.uri) == runs


@case("checkpoints", "a fresh run into a directory that holds a finished run")
def case_fresh_run_into_a_finished_run(h: Harness) -> None:
    run_dir = h.finished("base")
    before = snapshot(run_dir)
    line = refused(h, "base")
    assert f"output_dir={run_dir} already holds a run (MLflow run" in line and "resume=auto" in line
    assert snapshot(run_dir) == before


@case("checkpoints", "resuming a checkpoint of one run into the directory of another")
def case_resume_into_another_runs_directory(h: Harness) -> None:
    other = h.finished("other", "trainer.max_steps=1")
    before = snapshot(other)
    checkpoint = h.finished("base") / "checkpoint.pt"
    line = refused(h, "other", f"resume={checkpoint}")
    assert "holds another run" in line and snapshot(other) == before


# --- plugins ----------------------------------------------------------------------------------


def entry_point_plugin(h: Harness, monkeypatch: pytest.MonkeyPatch, name: str, source: str) -> None:
    """A distribution ``name`` with an ``ssl_core`` entry point to the module ``source``."""
    site = h.root / f"site-{name}"
    info = site / f"{name}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[ssl_core]\n{name} = {name}_module\n")
    (site / f"{name}_module.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(site))


def loads_with_a_warning(h: Harness, name: str, text: str) -> None:
    """Every command still works; the plugin is named in one warning and in ``ssl plugins``."""
    config = cli("config", "method=byol")
    assert config.code == 0 and "trainer:" in config.out, config.err
    (warning,) = [x for x in config.err.splitlines() if x.startswith("warning:")]
    assert warning.startswith(f"warning: plugin '{name}'") and text in warning
    printed = cli("run", "--print-config", *h.args("p"))
    assert printed.code == 0 and "trainer:" in printed.out
    listed = cli("plugins", "--json")
    assert listed.code == 0
    (failure,) = json.loads(listed.out)["failed"]
    assert failure["name"] == name and text in failure["error"]


@pytest.fixture
def plugin_dist(h: Harness, monkeypatch: pytest.MonkeyPatch) -> Callable[[str, str], None]:
    return lambda name, source: entry_point_plugin(h, monkeypatch, name, source)


@case("plugins", "a plugin calling sys.exit(0) at import")
def case_plugin_exit_0_at_import(h: Harness) -> None:
    h.plugin_dist("exit0", "import sys\nsys.exit(0)\n")
    loads_with_a_warning(h, "exit0", "SystemExit: 0")


@case("plugins", "a plugin calling sys.exit('message') at import")
def case_plugin_exit_message_at_import(h: Harness) -> None:
    h.plugin_dist("exitmsg", "import sys\nsys.exit('cannot work here')\n")
    loads_with_a_warning(h, "exitmsg", "SystemExit: cannot work here")


@case("plugins", "a plugin raising KeyboardInterrupt at import")
def case_plugin_interrupt_at_import(h: Harness) -> None:
    h.plugin_dist("interrupts", "raise KeyboardInterrupt\n")
    loads_with_a_warning(h, "interrupts", "KeyboardInterrupt")


REGISTERS = """
    from dataclasses import dataclass
    from ssl_core import hookimpl, option

    @dataclass
    class Options:
        name: str = option("x", "collides with backbone.name")

    class Plain:
        pass

    @hookimpl
    def {hook}(register):
        register({call})
"""


@case("plugins", "a method named like a core config group (trainer)")
def case_plugin_method_named_trainer(h: Harness) -> None:
    source = REGISTERS.format(hook="ssl_register_methods", call="'trainer', object")
    h.plugin_dist("grouped", source)
    loads_with_a_warning(h, "grouped", "collides with the core config")


@case("plugins", "a backbone option colliding with the core's backbone.name")
def case_plugin_option_collides(h: Harness) -> None:
    source = REGISTERS.format(hook="ssl_register_backbones", call="'mine', object, options=Options")
    h.plugin_dist("colliding", source)
    loads_with_a_warning(h, "colliding", "declares option backbone.name")


@case("plugins", "a component whose options are not a dataclass")
def case_plugin_options_not_a_dataclass(h: Harness) -> None:
    source = REGISTERS.format(hook="ssl_register_datasets", call="'mine', object, options=Plain")
    h.plugin_dist("plainopts", source)
    loads_with_a_warning(h, "plainopts", "give a dataclass")


@case("plugins", "a component name holding a comma")
def case_plugin_name_with_comma(h: Harness) -> None:
    source = REGISTERS.format(hook="ssl_register_view_generators", call="'a,b', object")
    h.plugin_dist("comma", source)
    loads_with_a_warning(h, "comma", "cannot be selected")


class Faulty:
    """A plugin failing in one hook, in this process: ``Faulty("ssl_step_end", error)``."""

    def __init__(self, hook: str, error: BaseException) -> None:
        self.hook, self.exc = hook, error

    def act(self, hook: str) -> None:
        if hook == self.hook:
            raise self.exc

    @hookimpl
    def ssl_validate_config(self, config: Any) -> None:
        self.act("ssl_validate_config")

    @hookimpl(trylast=True)  # after the tracker made the MLflow run
    def ssl_run_start(self, run: Any) -> None:
        self.act("ssl_run_start")

    @hookimpl
    def ssl_step_end(self, run: Any, step: int, metrics: dict) -> None:
        self.act("ssl_step_end")

    @hookimpl
    def ssl_epoch_end(self, run: Any, epoch: int, metrics: dict) -> None:
        self.act("ssl_epoch_end")

    @hookimpl
    def ssl_checkpoint(self, run: Any, path: Path) -> None:
        self.act("ssl_checkpoint")

    @hookimpl(tryfirst=True)
    def ssl_run_end(self, run: Any, status: str, metrics: dict) -> None:
        self.act("ssl_run_end")

    @hookimpl(wrapper=True)
    def ssl_compute_loss(self, model: Any, views: Any, info: Any) -> Any:
        self.act("ssl_compute_loss")
        return (yield)

    @hookimpl(wrapper=True)
    def ssl_build_backbone(self) -> Any:
        self.act("ssl_build_backbone")
        return (yield)


def faulty_run(h: Harness, name: str, hook: str, error: BaseException) -> tuple[Result, dict]:
    """A run with a plugin raising ``error`` in ``hook``; returns it and the new runs' statuses."""
    before = statuses(h.uri)
    result = cli("run", *h.args(name), plugins=[("faulty", Faulty(hook, error))])
    after = statuses(h.uri)
    h.no_running()
    return result, {k: v for k, v in after.items() if k not in before}


def plugin_line(hook: str, error: str) -> str:
    return f"error: plugin 'faulty' failed in {hook}: {error}"


@case("plugin hooks", "ssl_validate_config raises: nothing started")
def case_validate_config_raises(h: Harness) -> None:
    result, new = faulty_run(h, "hook-validate", "ssl_validate_config", RuntimeError("boom"))
    assert result.error(1) == plugin_line("ssl_validate_config", "RuntimeError: boom")
    assert new == {} and not (h.root / "hook-validate").exists()


@case("plugin hooks", "ssl_validate_config raises a UserError: its line, exit 2")
def case_validate_config_user_error(h: Harness) -> None:
    from ssl_core import UserError

    result, new = faulty_run(h, "hook-user", "ssl_validate_config", UserError("x=1 is bad; use 2"))
    assert result.before_any_work() == "error: x=1 is bad; use 2" and new == {}


@case("plugin hooks", "ssl_build_backbone wrapper raises: nothing started")
def case_build_backbone_raises(h: Harness) -> None:
    result, new = faulty_run(h, "hook-backbone", "ssl_build_backbone", ValueError("bad shape"))
    assert result.error(1) == plugin_line("ssl_build_backbone", "ValueError: bad shape")
    assert new == {} and not (h.root / "hook-backbone").exists()


@case("plugin hooks", "ssl_run_start raises: the run is FAILED")
def case_run_start_raises(h: Harness) -> None:
    result, new = faulty_run(h, "hook-start", "ssl_run_start", RuntimeError("no"))
    assert result.error(1) == plugin_line("ssl_run_start", "RuntimeError: no")
    assert list(new.values()) == ["FAILED"]


@case("plugin hooks", "ssl_step_end raises: the run is FAILED")
def case_step_end_raises(h: Harness) -> None:
    result, new = faulty_run(h, "hook-step", "ssl_step_end", RuntimeError("step"))
    assert result.error(1) == plugin_line("ssl_step_end", "RuntimeError: step")
    assert list(new.values()) == ["FAILED"]
    identity = json.loads((h.root / "hook-step" / "run.json").read_text())
    assert identity["status"] == "FAILED" and identity["mlflow_run_id"] in new


@case("plugin hooks", "sys.exit(0) in ssl_step_end: exit 1, not 0; the run is FAILED")
def case_step_end_sys_exit(h: Harness) -> None:
    result, new = faulty_run(h, "hook-exit", "ssl_step_end", SystemExit(0))
    assert result.error(1) == plugin_line("ssl_step_end", "SystemExit: 0")
    assert list(new.values()) == ["FAILED"]


@case("plugin hooks", "ssl_epoch_end raises: the run is FAILED")
def case_epoch_end_raises(h: Harness) -> None:
    result, new = faulty_run(h, "hook-epoch", "ssl_epoch_end", KeyError("k"))
    assert result.error(1) == plugin_line("ssl_epoch_end", "KeyError: 'k'")
    assert list(new.values()) == ["FAILED"]


@case("plugin hooks", "ssl_checkpoint raises: the run is FAILED")
def case_checkpoint_hook_raises(h: Harness) -> None:
    result, new = faulty_run(h, "hook-ckpt", "ssl_checkpoint", OSError("disk"))
    assert result.error(1) == plugin_line("ssl_checkpoint", "OSError: disk")
    assert list(new.values()) == ["FAILED"]


@case("plugin hooks", "a wrapper of ssl_compute_loss raises: the run is FAILED")
def case_loss_wrapper_raises(h: Harness) -> None:
    result, new = faulty_run(h, "hook-loss", "ssl_compute_loss", ZeroDivisionError("x"))
    assert result.error(1) == plugin_line("ssl_compute_loss", "ZeroDivisionError: x")
    assert list(new.values()) == ["FAILED"]


@case("plugin hooks", "out of memory in a step hook is said as such")
def case_out_of_memory(h: Harness) -> None:
    import torch

    result, new = faulty_run(
        h, "hook-oom", "ssl_compute_loss", torch.OutOfMemoryError("CUDA out of memory")
    )
    line = result.error(1)
    assert line.startswith("error: out of memory in ssl_compute_loss (plugin 'faulty')")
    assert "lower trainer.batch_size" in line and list(new.values()) == ["FAILED"]


@case("plugin hooks", "ssl_run_end raises after training: a warning, exit 0, FINISHED")
def case_run_end_raises(h: Harness) -> None:
    result, new = faulty_run(h, "hook-end", "ssl_run_end", RuntimeError("late"))
    assert result.code == 0 and "Traceback" not in result.err
    (warning,) = [x for x in result.err.splitlines() if "failed in ssl_run_end" in x]
    assert warning == "warning: plugin 'faulty' failed in ssl_run_end: RuntimeError: late"
    assert list(new.values()) == ["FINISHED"]


@case("plugin hooks", "KeyboardInterrupt in ssl_run_end: the tracker still records the end")
def case_run_end_interrupted(h: Harness) -> None:
    result, new = faulty_run(h, "hook-endint", "ssl_run_end", KeyboardInterrupt())
    assert result.code == 130 and "Traceback" not in result.err
    assert list(new.values()) == ["FINISHED"]


# --- stores and other commands ----------------------------------------------------------------


@case("stores", "tracking.uri=sqlite:/// a folder")
def case_sqlite_uri_is_a_folder(h: Harness) -> None:
    folder = h.root / "store-dir"
    folder.mkdir()
    line = refused(h, "s1", f"tracking.uri=sqlite:///{folder}")
    assert f"names a folder ({folder})" in line and snapshot(folder) == {}


@case("stores", "tracking.uri=sqlite:/// in a folder that does not exist")
def case_sqlite_uri_in_missing_folder(h: Harness) -> None:
    line = refused(h, "s2", f"tracking.uri=sqlite:///{h.root}/nowhere/mlflow.db")
    assert "does not exist" in line and not (h.root / "nowhere").exists()


@case("stores", "tracking.uri=sqlite:/// a file that is not a database")
def case_sqlite_uri_not_a_database(h: Harness) -> None:
    (h.root / "notes.db").write_text("not sqlite")
    assert "is not an SQLite database" in refused(
        h, "s3", f"tracking.uri=sqlite:///{h.root}/notes.db"
    )


@case("stores", "ssl eval and ssl compare on a store that is a folder")
def case_read_store_is_a_folder(h: Harness) -> None:
    folder = h.root / "store-dir2"
    folder.mkdir()
    for args in (["eval", "knn", "run=abc"], ["compare", "experiment=x"]):
        line = cli(*args, f"tracking.uri=sqlite:///{folder}").before_any_work()
        assert "names a folder" in line


@case("stores", "an MLflow server that does not answer")
def case_unreachable_server(h: Harness) -> None:
    before = statuses(h.uri)
    line = cli("run", *h.args("http", "tracking.uri=http://127.0.0.1:9")).error(2)
    assert statuses(h.uri) == before and not (h.root / "http").exists()
    assert "cannot reach the MLflow tracking server at http://127.0.0.1:9" in line


@case("paths", "ssl export out= where nothing can be written")
def case_export_not_writable(h: Harness) -> None:
    run_dir = h.finished("base")
    line = cli("export", f"run={run_dir}", "out=/proc/ssl-faults/enc.safetensors").before_any_work()
    assert "cannot write out=/proc/ssl-faults/enc.safetensors" in line


@case("paths", "ssl export out= below a file")
def case_export_below_a_file(h: Harness) -> None:
    (h.root / "plainfile").write_text("x")
    line = cli(
        "export", f"run={h.finished('base')}", f"out={h.root}/plainfile/e.safetensors"
    ).before_any_work()
    assert "is a file, not a folder" in line


@case("paths", "ssl compare --plot where nothing can be written")
def case_plot_not_writable(h: Harness) -> None:
    h.finished("base")
    args = ["compare", "experiment=faults", f"tracking.uri={h.uri}", "--csv"]
    line = cli(*args, "--plot", "/proc/ssl-faults/curves.png").before_any_work()
    assert "cannot write --plot=/proc/ssl-faults/curves.png" in line


# --- output a log or a script can read --------------------------------------------------------


@case("output", "ssl compare into a pipe: full-width markdown; a foreign run is left out")
def case_compare_outside_a_terminal(h: Harness) -> None:
    from mlflow.tracking import MlflowClient

    long = "a-run-name-long-enough-to-wrap-in-eighty-columns-" + "x" * 40
    for lr in ("0.1", "0.2"):
        h.finished(
            f"cmp{lr}",
            "tracking.experiment=cmp",
            f"tracking.run_name={long}-{lr}",
            f"byol.tau_base={lr}",
            "trainer.max_steps=1",
        )
    client = MlflowClient(tracking_uri=h.uri)
    experiment = client.get_experiment_by_name("cmp").experiment_id
    foreign = client.create_run(experiment, run_name="made-elsewhere")
    client.log_param(foreign.info.run_id, "learning_rate", "3")
    client.set_terminated(foreign.info.run_id)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COLUMNS", "80")
        result = cli("compare", "experiment=cmp", f"tracking.uri={h.uri}")
    assert result.code == 0, result.err
    rows = [x for x in result.out.splitlines() if x.startswith("|")]
    assert rows[0].startswith("| run | id | byol.tau_base |")
    assert len(rows) == 4 and all(f"{long}-{lr}" in result.out for lr in ("0.1", "0.2"))
    assert "made-elsewhere" not in result.out and "…" not in result.out
    assert "left out 1 run(s) not made by ssl run: made-elsewhere" in result.err


# --- signals at each phase, and the run directory's owner -------------------------------------


@case("signals", "the run's MLflow id is in the run directory before the first checkpoint")
def case_identity_before_first_checkpoint(h: Harness) -> None:
    from ssl_core.training.resume import step_checkpoints

    proc = h.procs["owned"]
    proc.wait_for("fault: sleep in ssl_step_end")  # in step 2; checkpoint_every=500
    identity = json.loads((h.root / "owned" / "run.json").read_text())
    assert identity["pid"] == proc.popen.pid and identity["status"] == "RUNNING"
    assert statuses(h.proc_uri("owned")) == {identity["mlflow_run_id"]: "RUNNING"}
    assert step_checkpoints(h.root / "owned") == []


@case("signals", "a second run into a directory in use: one line naming the owner, exit 2")
def case_second_run_into_a_directory_in_use(h: Harness) -> None:
    import socket

    proc = h.procs["owned"]
    proc.wait_for("fault: sleep in ssl_step_end")
    run_id = json.loads((h.root / "owned" / "run.json").read_text())["mlflow_run_id"]
    before = snapshot(h.root / "owned")
    args = h.args("owned", "trainer.epochs=3", uri=h.proc_uri("owned"))
    line = cli("run", *args).before_any_work()
    assert (
        f"is in use by another run (pid {proc.popen.pid} on host {socket.gethostname()}, MLflow run {run_id}"
        in line
    )
    assert snapshot(h.root / "owned") == before
    assert len(statuses(h.proc_uri("owned"))) == 1


@case(
    "signals",
    "SIGKILL before the first checkpoint, then resume=auto: the same MLflow run, each step once, partial files removed",
)
def case_sigkill_before_first_checkpoint_then_resume(h: Harness) -> None:
    proc = h.procs["owned"]
    proc.wait_for("fault: sleep in ssl_step_end")
    run_id = json.loads((h.root / "owned" / "run.json").read_text())["mlflow_run_id"]
    partial = h.root / "owned" / "checkpoints" / ".step-00000003.pt.k1ll3d00.tmp"
    partial.parent.mkdir(exist_ok=True)
    partial.write_bytes(b"half a checkpoint")  # what a kill during a write leaves
    proc.popen.send_signal(signal.SIGKILL)
    assert proc.finish().code == -signal.SIGKILL
    uri = h.proc_uri("owned")
    result = cli("run", *h.args("owned", "trainer.epochs=3", "resume=auto", uri=uri))
    assert result.code == 0, result.err[-3000:]
    assert f"mlflow: continuing {run_id}" in result.err
    assert statuses(uri) == {run_id: "FINISHED"}
    assert loss_steps(uri, run_id) == list(range(1, 10))  # no gap, no step twice
    assert not partial.exists() and "removed 1 partial file" in result.err
    identity = json.loads((h.root / "owned" / "run.json").read_text())
    assert identity["mlflow_run_id"] == run_id and identity["status"] == "FINISHED"
    assert not (h.root / "owned" / ".ssl_core.lock").exists()


def stopped_while_setting_up(h: Harness, name: str, signum: int) -> None:
    proc = h.procs[name]
    proc.wait_for("fault: sleep in ssl_build_dataset")
    proc.popen.send_signal(signum)
    result = proc.finish()
    line = f"stopped by {signal.Signals(signum).name} before training started; nothing was written"
    assert result.code == 128 + signum and line in result.err and "Traceback" not in result.err
    assert not (h.root / name).exists()  # the run directory it made is gone again
    assert statuses(h.proc_uri(name)) == {}


@case("signals", "SIGTERM while the data is being built: stops at once, nothing written")
def case_sigterm_while_setting_up(h: Harness) -> None:
    stopped_while_setting_up(h, "setup_term", signal.SIGTERM)


class SignalsItself:
    """Sends this process ``signum`` while the data is built, then waits (in this process)."""

    def __init__(self, signum: int) -> None:
        self.signum = signum

    @hookimpl(wrapper=True)
    def ssl_build_dataset(self) -> Any:
        os.kill(os.getpid(), self.signum)
        time.sleep(60)  # the handler stops the run before this ends
        return (yield)


@case("signals", "Ctrl-C while the data is being built: stops at once, nothing written")
def case_sigint_while_setting_up(h: Harness) -> None:
    before = statuses(h.uri)
    result = cli("run", *h.args("setup-int"), plugins=[("kill", SignalsItself(signal.SIGINT))])
    assert result.code == 130 and "Traceback" not in result.err, result.err
    line = "stopped by SIGINT before training started; nothing was written"
    assert line in result.err and not (h.root / "setup-int").exists()
    assert statuses(h.uri) == before


@case(
    "signals", "two Ctrl-C while the run's end is recorded: the run is FINISHED with its artifacts"
)
def case_two_ctrl_c_during_the_end(h: Harness) -> None:
    from mlflow.tracking import MlflowClient

    proc = h.procs["ending"]
    proc.wait_for("fault: sleep in ssl_run_end")
    proc.popen.send_signal(signal.SIGINT)
    time.sleep(0.5)
    proc.popen.send_signal(signal.SIGINT)
    time.sleep(0.5)
    h.release["ending"].touch()
    result = proc.finish()
    assert result.code == 0 and "Traceback" not in result.err, result.err[-3000:]
    assert "recording the run's end first" in result.err
    ((run_id, status),) = statuses(h.proc_uri("ending")).items()
    assert status == "FINISHED"
    client = MlflowClient(tracking_uri=h.proc_uri("ending"))
    assert {a.path for a in client.list_artifacts(run_id)} == {"checkpoint", "config", "encoder"}


@case(
    "signals",
    "trainer.devices=2 and SIGTERM to the parent: every process checkpoints and stops; exit 143",
)
def case_devices_sigterm(h: Harness) -> None:
    from ssl_core.training.checkpoint import load_checkpoint
    from ssl_core.training.resume import step_checkpoints

    proc = h.procs["ddp_term"]
    proc.wait_for("fault: sleep in ssl_step_end")
    workers = children(proc.popen.pid)
    assert len(workers) == 2
    proc.popen.send_signal(signal.SIGTERM)
    time.sleep(1)
    h.release["ddp_term"].touch()
    result = proc.finish()
    assert result.code == 143 and "Traceback" not in result.err, result.err[-3000:]
    (line,) = [x for x in result.err.splitlines() if x.startswith("stopped by SIGTERM")]
    assert not any(pid_alive(pid) for pid in workers)
    newest = step_checkpoints(h.root / "ddp_term")[-1]
    assert f"checkpoint {newest}" in line and load_checkpoint(newest)["world_size"] == 2
    assert list(statuses(h.proc_uri("ddp_term")).values()) == ["KILLED"]


@case("signals", "trainer.devices=2 and the parent SIGKILLed: the processes checkpoint and stop")
def case_devices_parent_killed(h: Harness) -> None:
    from ssl_core.training.resume import step_checkpoints

    proc = h.procs["ddp_kill"]
    proc.wait_for("fault: sleep in ssl_step_end")
    workers = children(proc.popen.pid)
    assert len(workers) == 2
    proc.popen.send_signal(signal.SIGKILL)
    time.sleep(1)
    h.release["ddp_kill"].touch()
    end = time.monotonic() + 300
    while any(pid_alive(pid) for pid in workers) and time.monotonic() < end:
        time.sleep(0.5)
    assert not any(pid_alive(pid) for pid in workers), proc.text[-3000:]
    assert "stopped by SIGTERM" in proc.text and step_checkpoints(h.root / "ddp_kill")
    assert list(statuses(h.proc_uri("ddp_kill")).values()) == ["KILLED"]
    assert not (h.root / "ddp_kill" / ".ssl_core.lock").exists()


# --- helpers for cases ------------------------------------------------------------------------


class ThreeViewsRun:
    """A view generator making three views and not saying so."""

    def __init__(self, config: Any) -> None:
        self.size = int(config.data.image_size)

    @hookimpl
    def ssl_sample_transform(self) -> Any:
        return ThreeViewsTransform(self.size)

    @hookimpl
    def ssl_make_views(self, batch: dict) -> list:
        return [v.float() / 255 for v in batch["views"]]


class ThreeViewsTransform:
    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, image: Any) -> dict:
        import torch

        view = torch.zeros(3, self.size, self.size, dtype=torch.uint8)
        return {"views": [view, view.clone(), view.clone()]}


class ThreeViews:
    @hookimpl
    def ssl_register_view_generators(self, register: Any) -> None:
        register("three_views", ThreeViewsRun)


# --- the test ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CASES))
def test_fault(name: str, h: Harness, plugin_dist: Callable[[str, str], None]) -> None:
    h.plugin_dist = plugin_dist
    RESULTS[name] = False
    CASES[name].check(h)
    RESULTS[name] = True


if __name__ == "__main__":
    if "--list" in sys.argv:
        for name, item in CASES.items():
            print(f"{item.group:13} {name:45} {item.description}")
        raise SystemExit(0)
    raise SystemExit(pytest.main([__file__, "-q", "-p", "no:cacheprovider", *sys.argv[1:]]))
