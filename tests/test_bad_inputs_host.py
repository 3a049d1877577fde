"""Bad input to the host verbs: one line on stderr naming the fix, exit 2, no traceback, and
every file already there byte-identical afterwards.

Each command runs with TensorFlow made unimportable: a bad value or output path is refused
before the 10-second TensorFlow import and long before any training.
"""

import json
import os
import shutil
import subprocess

import pytest

from tests.conftest import ROOT, blocked_python

RUN_CLIP = ROOT / "benchmarks" / "results" / "amd-epyc-vm" / "run-clip.json"
MAIN = "import sys; from host.cli import main; sys.exit(main(sys.argv[1:]))"

# (id, argv, the words the one line must contain).  In argv: H5 an existing file standing for a
# Keras model, TFL the shipped .tflite, RES an existing result file, PREV a previous train-qat
# run, FOREIGN a folder of someone else's, AFILE a plain file, DIR an empty folder.
CASES = [
    ("epochs-0", ["train", "--epochs", "0"], "--epochs must be >= 1"),
    ("epochs-negative", ["train-qat", "--epochs", "-3"], "--epochs must be >= 1"),
    ("batch-0", ["train", "--batch", "0"], "--batch must be > 0"),
    ("limit-small", ["train-qat", "--limit", "5"], "--limit must be >= 100"),
    ("limit-word", ["train-qat", "--limit", "abc"], "--limit takes a number"),
    ("prune-limit-0", ["prune", "H5", "--limit", "0"], "--limit must be >= 100"),
    ("sparsity-1", ["train-qat", "--sparsity", "1"], "--sparsity must be < 1"),
    ("sparsity-nan", ["train-qat", "--sparsity", "nan"], "--sparsity must be a finite number"),
    ("sparsity-negative", ["train-qat", "--sparsity", "-0.5"], "--sparsity must be >= 0"),
    ("prune-sparsity-0", ["prune", "H5", "--sparsity", "0"], "--sparsity must be > 0"),
    ("keep-0", ["prune-channels", "H5", "--keep", "0"], "--keep must be > 0"),
    ("keep-1", ["prune-channels", "H5", "--keep", "1"], "--keep must be < 1"),
    ("keep-1.5", ["prune-channels", "H5", "--keep", "1.5"], "--keep must be < 1"),
    ("qat-epochs-negative", ["train-qat", "--qat-epochs", "-1"], "--qat-epochs must be >= 0"),
    ("channels-qat-epochs", ["prune-channels", "H5", "--qat-epochs", "-2"], "--qat-epochs must be >= 0"),
    ("prune-epochs-0", ["train-qat", "--prune-epochs", "0"], "--prune-epochs must be >= 1"),
    ("repeats-0", ["prune-channels", "H5", "--repeats", "0"], "--repeats must be > 0"),
    ("threads-0", ["evaluate", "TFL", "--threads", "0"], "--threads must be >= 1"),
    ("threads-huge", ["evaluate", "TFL", "--threads", "9999"], "--threads must be <="),
    ("onnx-threads-0", ["export-onnx", "H5", "--threads", "0"], "--threads must be >= 1"),
    ("opset-0", ["export-onnx", "H5", "--opset", "0"], "--opset must be > 0"),
    ("lr-inf", ["train", "--lr", "inf"], "--lr must be a finite number"),
    ("lr-0", ["train", "--lr", "0"], "--lr must be > 0"),
    ("qat-lr-negative", ["train-qat", "--qat-lr", "-1"], "--qat-lr must be > 0"),
    ("lr-decay-0", ["train", "--lr-decay", "0"], "--lr-decay must be > 0"),
    ("l2-negative", ["train", "--l2", "-1"], "--l2 must be >= 0"),
    ("seed-negative", ["train", "--seed", "-1"], "--seed must be >= 0"),
    ("temperature-0", ["distill", "--temperature", "0"], "--temperature must be > 0"),
    ("alpha-1.5", ["distill", "--alpha", "1.5"], "--alpha must be <= 1"),
    ("teacher-epochs-0", ["distill", "--teacher-epochs", "0"], "--teacher-epochs must be >= 1"),
    ("tolerance-nan", ["report", "RES", "--tolerance", "nan"], "--tolerance must be a finite number"),
    ("mnist-index-word", ["explain", "H5", "--mnist-index", "1,x"], "comma-separated integers"),
    ("mnist-errors-negative", ["explain", "H5", "--mnist-errors", "-1"], "--mnist-errors must be >= 0"),
    ("explain-nothing", ["explain", "H5"], "nothing to explain"),
    ("arch-unknown", ["train-qat", "--arch", "vgg"], "invalid choice: 'vgg'"),
    ("from-missing", ["train-qat", "--from", "missing.h5"], "missing.h5: no such file"),
    ("model-missing", ["evaluate", "missing.tflite"], "missing.tflite: no such file"),
    ("model-is-folder", ["prune", "DIR"], "is not a file"),
    ("teacher-missing", ["distill", "--teacher", "nope.h5"], "nope.h5: no such file"),
    # --out of the verbs that write a folder
    ("out-is-file", ["train-qat", "--out", "AFILE"], "is a file, not a folder"),
    ("out-under-file", ["train-qat", "--out", "AFILE/sub"], "cannot be created: AFILE is a file"),
    ("out-foreign", ["train-qat", "--out", "FOREIGN"], "is not empty and holds no record"),
    ("out-other-verb", ["train", "--out", "PREV"], "holds a `host train-qat` run"),
    ("out-other-verb-distill", ["distill", "--out", "PREV"], "not a previous `host distill` run"),
    ("convert-out-foreign", ["convert", "H5", "--out", "FOREIGN"], "pass --force"),
    ("onnx-out-file", ["export-onnx", "H5", "--out", "RES"], "is a file, not a folder"),
    # files: host report --out / --markdown, explain --out
    ("report-out-missing-folder", ["report", "RES", "--out", "missing/r.html"], "missing does not exist"),
    ("report-out-directory", ["report", "RES", "--out", "DIR"], "is a directory, not a file"),
    ("report-markdown-missing-folder", ["report", "RES", "--markdown", "missing/r.md"], "does not exist"),
    ("report-markdown-directory", ["report", "RES", "--markdown", "DIR"], "--markdown DIR is a directory"),
    ("report-same-file", ["report", "RES", "--out", "r.html", "--markdown", "r.html"], "the same file"),
    ("report-no-results", ["report", "missing.json"], "missing.json"),
    ("report-not-json", ["report", "AFILE"], "cannot read"),
    ("explain-out-missing-folder", ["explain", "H5", "--mnist-errors", "2", "--out", "missing/x.png"],
     "does not exist"),
    ("explain-out-not-png", ["explain", "H5", "--mnist-errors", "2", "--out", "x.jpg"], "must be a .png"),
]
# Where nothing can be made even by root (os.access says yes to root): refused before the work.
CASES += [("out-in-proc", ["train-qat", "--out", "/proc/mnist-edge-out"], "--out /proc/mnist-edge-out: "),
          ("report-out-in-proc", ["report", "RES", "--out", "/proc/r.html"], "--out /proc/r.html: ")]
if os.geteuid() != 0:  # root writes anywhere
    CASES += [("report-out-unwritable", ["report", "RES", "--out", "RO/r.html"], "is not writable"),
              ("out-unwritable", ["train-qat", "--out", "RO/sub"], "is not writable")]


@pytest.fixture
def world(tmp_path):
    """A working folder with things a careless command could destroy."""
    shutil.copy(RUN_CLIP, tmp_path / "results.json")
    (tmp_path / "report.html").write_text("<p>last week's report</p>")
    prev = tmp_path / "prev"
    prev.mkdir()
    (prev / "model.tflite").write_bytes(b"TFL3 previous model")
    (prev / "model.json").write_text('{"previous": true}')
    (prev / ".host-run.json").write_text(json.dumps({"verb": "train-qat", "files": ["model.tflite", "model.json"]}))
    foreign = tmp_path / "foreign"
    (foreign / "baseline").mkdir(parents=True)
    (foreign / "notes.txt").write_text("mine")
    (foreign / "baseline" / "keep.txt").write_text("also mine")
    (tmp_path / "model.h5").write_bytes(b"an .h5 stand-in: exists, never loaded")
    (tmp_path / "afile").write_text("a plain file")
    (tmp_path / "dir").mkdir()
    (tmp_path / "ro").mkdir(mode=0o555)
    return tmp_path


def _snapshot(root):
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


SUBST = {"H5": "model.h5", "TFL": str(ROOT / "device" / "models" / "model.tflite"), "RES": "results.json",
         "PREV": "prev", "FOREIGN": "foreign", "AFILE": "afile", "DIR": "dir", "RO": "ro"}


def _argv(args):
    out = []
    for a in args:
        head, _, tail = a.partition("/")
        out.append(SUBST.get(head, head) + (f"/{tail}" if tail else "") if head in SUBST else a)
    return out


@pytest.mark.parametrize("args,needle", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(world, args, needle):
    before = _snapshot(world)
    out = subprocess.run(blocked_python(MAIN) + _argv(args), cwd=world, capture_output=True, text=True,
                         timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    lines = [l for l in out.stderr.splitlines() if l.strip()]
    assert out.returncode == 2, out.stderr
    assert len(lines) == 1 and lines[0].startswith("host"), out.stderr
    needle = needle.replace("AFILE", "afile").replace("DIR", "dir")
    assert needle in lines[0], lines[0]
    assert "Traceback" not in out.stderr
    assert _snapshot(world) == before
