"""``ssl run --config FILE`` and ``--from RUN``: merged under the command line, validated as
strictly, errors naming the file; a re-run differs from its run only where it was told to."""

from __future__ import annotations

import json

import pytest
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from ssl_core.cli import main

BASE = ["method=byol", "backbone=test_resnet", "data=synthetic"]


def resolved(capsys, *args: str) -> dict:
    assert main(["run", *args, "--print-config"]) == 0
    return OmegaConf.to_container(OmegaConf.create(capsys.readouterr().out))


def test_the_command_line_wins_over_files_and_later_files_over_earlier(tmp_path, capsys):
    first = tmp_path / "exp.yaml"
    first.write_text(
        "method: byol\n"
        "trainer:\n  epochs: 7\n  batch_size: 16\n"
        "optim.lr: 0.3\n"  # dotted keys work too
        "eval: {knn_every: '${trainer.epochs}'}\n"  # interpolations are resolved in the file
        "data: {name: folder, path: '1.5'}\n"  # a string that looks like a number stays one
    )
    second = tmp_path / "more.yaml"
    second.write_text("trainer: {batch_size: 32}\n")
    cfg = resolved(capsys, "--config", str(first), "--config", str(second), "trainer.epochs=9")
    assert cfg["trainer"]["epochs"] == 9  # the command line
    assert cfg["trainer"]["batch_size"] == 32  # the later file
    assert cfg["optim"]["lr"] == 0.3 and cfg["eval"]["knn_every"] == 7
    assert cfg["method"]["name"] == "byol" and cfg["data"]["path"] == "1.5"
    # and without the command line's key, the file's
    assert resolved(capsys, "--config", str(first))["trainer"]["epochs"] == 7


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("trainer: {batch_sise: 8}\n", "unknown config key 'trainer.batch_sise' (did you mean"),
        ("trainer: {batch_size: abc}\n", "invalid value trainer.batch_size='abc': expected int"),
        ("trainer: {batch_size: 1}\n", "trainer.batch_size=1 is out of range; must be >= 2"),
        ("method: simsam\n", "unknown method 'simsam' (method=simsam); did you mean: simsiam"),
        ("trainer: [1, 2\n", "is not a valid YAML config"),
        ("- 1\n- 2\n", "holds a list, not a mapping of config keys"),
    ],
)
def test_a_bad_file_is_one_line_naming_the_file_and_key(tmp_path, capsys, text, message):
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    method = [] if text.startswith("method") else ["method=byol"]
    assert main(["run", "--config", str(path), *method, *BASE[1:]]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert err.startswith(f"error: {path}: ") or err.startswith(f"error: --config {path} ")


def test_a_missing_file_and_a_bad_command_line_key_name_their_source(tmp_path, capsys):
    assert main(["run", "--config", str(tmp_path / "none.yaml"), *BASE]) == 2
    assert f"error: --config {tmp_path / 'none.yaml'} does not exist" in capsys.readouterr().err
    path = tmp_path / "ok.yaml"
    path.write_text("trainer: {epochs: 3}\n")
    assert main(["run", "--config", str(path), *BASE, "trainer.epoks=3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown config key 'trainer.epoks'")  # not blamed on the file
    # a bad value in a file is an error even where the command line overrides it
    path.write_text("trainer: {batch_size: abc}\n")
    assert main(["run", "--config", str(path), *BASE, "trainer.batch_size=8"]) == 2
    assert f"error: {path}: invalid value trainer.batch_size='abc'" in capsys.readouterr().err


def test_from_a_run_re_runs_it_and_differs_only_where_overridden(trained_run, capsys):
    client = MlflowClient(tracking_uri=trained_run.tracking_uri)
    old = client.get_run(trained_run.run_id).data.tags["plugin.ssl-core"]
    client.set_tag(trained_run.run_id, "plugin.ssl-core", "0.0.1")
    try:
        assert main(["run", "--from", trained_run.run_id, trained_run.uri, "optim.lr=0.9"]) == 0
    finally:
        client.set_tag(trained_run.run_id, "plugin.ssl-core", old)
    err = capsys.readouterr().err
    assert f"warning: run {trained_run.run_id} was trained with other plugin versions" in err
    assert f"ssl-core 0.0.1 -> {old}" in err

    runs = client.search_runs(
        [client.get_run(trained_run.run_id).info.experiment_id],
        filter_string="params.`optim.lr` = '0.9'",
    )
    rerun = runs[0].info.run_id
    assert rerun != trained_run.run_id
    compare = ["compare", f"runs={trained_run.run_id},{rerun}", trained_run.uri, "--json"]
    assert main(compare) == 0
    assert json.loads(capsys.readouterr().out)["differing_keys"] == ["optim.lr"]


def test_from_a_config_yaml_is_a_new_run_and_does_not_go_with_resume(trained_run, capsys):
    saved = trained_run.output_dir / "config.yaml"
    original = OmegaConf.to_container(OmegaConf.load(saved))
    cfg = resolved(capsys, "--from", str(saved), "trainer.epochs=4")
    assert cfg["trainer"]["epochs"] == 4 and cfg["byol"] == original["byol"]
    assert cfg["output_dir"] != original["output_dir"]  # its own run directory and name
    assert cfg["tracking"]["run_name"] != original["tracking"]["run_name"]
    assert "warning" not in capsys.readouterr().err  # a YAML file carries no plugin versions
    # another method drops the run's method options instead of failing on them
    other = resolved(capsys, "--from", str(saved), "method=simclr")
    assert "byol" not in other and other["simclr"]["temperature"] == 0.1
    assert main(["run", "--from", str(saved), f"resume={trained_run.output_dir}"]) == 2
    assert "give one of them" in capsys.readouterr().err
