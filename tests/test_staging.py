"""--out folders: a run lands whole or not at all, replaces only what it owns, and Ctrl-C or
SIGTERM leave no staging folder behind."""

import json
import signal
import subprocess

import pytest

from device.errors import UsageError
from host.artifacts import RECORD, Staging, check_out_dir
from tests.conftest import ROOT, blocked_python


def _run(out, verb, files: dict):
    with Staging(out, verb) as st:
        for name, data in files.items():
            if isinstance(data, dict):
                st.path(name).mkdir()
                for sub, text in data.items():
                    (st.dir / name / sub).write_text(text)
            else:
                st.path(name).write_text(data)


def test_a_run_replaces_its_previous_run_and_nothing_else(tmp_path):
    out = tmp_path / "run"
    _run(out, "distill", {"model.tflite": "v1", "teacher.h5": "t1", "baseline": {"model.tflite": "b1"}})
    assert json.loads((out / RECORD).read_text())["files"] == ["model.tflite", "teacher.h5", "baseline"]
    check_out_dir(out, "distill")  # a previous run of the same verb: accepted
    with pytest.raises(UsageError, match="holds a `host distill` run"):
        check_out_dir(out, "train-qat")
    _run(out, "distill", {"model.tflite": "v2", "baseline": {"model.tflite": "b2"}})
    assert (out / "model.tflite").read_text() == "v2" and (out / "baseline" / "model.tflite").read_text() == "b2"
    assert not (out / "teacher.h5").exists()  # the old run's file this run did not write
    assert sorted(p.name for p in out.iterdir()) == [RECORD, "baseline", "model.tflite"]


def test_a_folder_of_someone_else_in_the_way_is_kept_aside(tmp_path, capsys):
    out = tmp_path / "run"
    (out / "baseline").mkdir(parents=True)
    (out / "baseline" / "mine.txt").write_text("precious")
    (out / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="pass --force"):
        check_out_dir(out, "distill")
    check_out_dir(out, "distill", force=True)
    _run(out, "distill", {"baseline": {"model.tflite": "b"}, "model.tflite": "m"})
    assert (out / "baseline.old" / "mine.txt").read_text() == "precious"
    assert (out / "notes.txt").read_text() == "mine"
    assert "kept it as" in capsys.readouterr().err


def test_a_failed_run_changes_nothing(tmp_path):
    out = tmp_path / "run"
    _run(out, "train", {"float.h5": "old"})
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(RuntimeError):
        with Staging(out, "train") as st:
            st.path("float.h5").write_text("new")
            raise RuntimeError("training blew up")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


SLOW_VERB = """
import sys, time
import host.cli as cli
from host.artifacts import Staging

def slow(args):
    with Staging(args.out, "train") as st:
        st.path("float.h5").write_text("half")
        print("staging", flush=True)
        time.sleep(60)
    return 0

cli.VERBS["train"] = cli._stoppable(slow)
sys.exit(cli.main(["train", "--out", sys.argv[1]]))
"""


@pytest.mark.parametrize("sig,code,word", [(signal.SIGTERM, 143, "terminated"),
                                           (signal.SIGINT, 130, "interrupted")])
def test_sigterm_and_ctrl_c_clean_the_staging_folder(tmp_path, sig, code, word):
    out = tmp_path / "run"
    _run(out, "train", {"float.h5": "previous"})
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    proc = subprocess.Popen(blocked_python(SLOW_VERB) + [str(out)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "staging"
        assert any(p.name.startswith(".staging-") for p in out.iterdir())
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == code, err
    assert err.strip() == f"host: {word}; nothing partial was written to {out}"
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
