"""The benchmark suite: its reference loop does the engine's math, and the suite runs.

Nothing here asserts a speed; the machine running the tests may be shared and noisy.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    import benchmarks.common
    import benchmarks.step

    return benchmarks


def test_hand_written_loop_takes_the_engines_first_step(bench) -> None:
    # Same initialization (seed 0, same creation order), same batch: after one step the loss,
    # the online weights (LARS) and the target weights (EMA) agree, so the step benchmark
    # compares like with like.
    setting = bench.common.Setting(device="cpu", backbone="resnet18", image_size=32, batch_size=8)
    with bench.common.engine_trainer(setting, ["augment=albumentations"]) as (trainer, batch):
        model = trainer.run.model
        before = [p.detach().clone() for p in model.online_encoder.parameters()]
        engine_loss, _ = trainer.train_step(batch)
        loop = bench.step.hand_loop(setting, lr=trainer.schedule["lr"])
        loop_loss = loop.step(batch["views"])
        assert engine_loss == pytest.approx(loop_loss, rel=1e-5)
        pairs = [
            (model.online_encoder, loop.encoder),
            (model.projector, loop.projector),
            (model.predictor, loop.predictor),
            (model.target_encoder, loop.target_encoder),
        ]
        for engine_part, loop_part in pairs:
            for (name, a), b in zip(
                engine_part.named_parameters(), loop_part.parameters(), strict=True
            ):
                torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=name)
        # the comparison is not of untouched weights
        after = list(model.online_encoder.parameters())
        assert sum(not torch.equal(a, b) for a, b in zip(after, before, strict=True)) > 10


def test_quick_suite_prints_every_table() -> None:
    started = time.time()
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--sizes", "32"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    headings = ("### Step overhead", "### Views", "### Data", "### End to end", "### Memory")
    for heading in (*headings, "### Folder", "### Health monitor", "### Estimate"):
        assert heading in out, heading
    assert re.search(r"\| hand-written loop \| \d+ \| .* \| 1\.00× \|", out)
    assert re.search(r"\| ssl_core, defaults \| \d+ \|", out)
    assert re.search(r"\| 32 px \| kornia \| cpu, in the training process \| \d+ \|", out)
    assert re.search(r"\| ssl run, defaults, steps 3–6 \| \d+ \| \*\*\d\.\d\d\*\* \|", out)
    for dataset in ("folder", "webdataset", "hf"):
        assert re.search(
            rf"\| 64 px \| {dataset} \| \d+ \| albumentations, 0 workers \| \d+ \|", out
        )
    assert re.search(r"\| ssl_core step, defaults \| \d+ \| \d+ \| - \|", out)
    assert re.search(r"\| engine step, health monitor every 2 steps \(guard on\) \| \d+ \|", out)
    assert re.search(r"\| median \|  \|  \| \*\*\d+\.\d\d\*\* \|", out)
    assert not (ROOT / "mlruns").exists() or (ROOT / "mlruns").stat().st_mtime < started


def test_unknown_part_is_one_line_and_exit_2() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--only", "steps"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "error: unknown part 'steps' in --only; valid: step, views, data, end-to-end, memory, "
        "folder, health, estimate"
    )


def test_quick_folder_part_times_both_opens_and_removes_its_tree(tmp_path) -> None:
    env = {**os.environ, "TMPDIR": str(tmp_path)}  # the tree goes under the system temp dir
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--only", "folder"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "### Folder scan: data=folder over 1,020 entries (20 folders x 50 files; " in out
    assert re.search(r"\| first open: list every folder, save the index \| \d+\.\d\d s \|", out)
    assert re.search(r"\| cached open \(median of 3\) \| \d+\.\d\d s \|", out)
    assert "making 20 x 50 hard links under " + str(tmp_path) in done.stderr
    assert list(tmp_path.glob("ssl-bench-folder-*")) == []  # (torch leaves a cache of its own)


def test_folder_tree_is_removed_when_the_benchmark_fails(bench, tmp_path, monkeypatch) -> None:
    import benchmarks.folder

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))

    def fail(root, cache):
        assert any(root.iterdir())
        raise RuntimeError("the build broke")

    monkeypatch.setattr(benchmarks.folder, "timed_build", fail)
    with pytest.raises(RuntimeError, match="the build broke"):
        benchmarks.folder.measure(3, 4)
    assert list(tmp_path.iterdir()) == []


def test_a_bad_folder_tree_is_one_line_and_exit_2() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--only", "folder", "--folder-tree", "1000"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "error: --folder-tree='1000' is not FOLDERSxFILES of at least 2x2 (e.g. 1000x1000)"
    )
