"""The seed article's advanced techniques as measured jobs: ``host distill``,
``host prune-channels``, ``host export-onnx`` and ``host explain``.

Each job writes its artifacts through a staging folder (nothing in ``--out`` changes unless
the job completes) and, where it produces figures, a result JSON (``schema_version`` 1, a
``kind``, the machine) that ``host report`` renders as a line of the benchmark report.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np

from host import tfenv  # noqa: F401
from device.errors import UsageError
from device.fsio import atomic_write_bytes, check_output
from device.system import machine_info
from host import models as archs
from host.artifacts import Staging, check_out_dir
from host.augment import to_float
from host.data import load_mnist
from host.pipeline import qat_int8_artifacts
from host.train import TrainConfig, fit, keras_accuracy, load_keras, set_seed


def _doc(kind: str, **fields) -> dict:
    """The figures of one technique run (the ``figures`` of its result document)."""
    return {"technique": kind, **fields}


def _write(path, doc: dict) -> None:
    """The result document (device.schema, kind ``technique``) for ``doc``."""
    from device.schema import TechniqueResult

    figures = {k: v for k, v in doc.items() if k not in ("technique", "wall_seconds")}
    TechniqueResult(machine=machine_info(), technique=doc["technique"], figures=figures,
                    wall_seconds=doc.get("wall_seconds")).write(path)


def _int8_summary(m: dict) -> dict:
    return {"int8_accuracy": m["accuracy"]["tflite"], "int8_correct": m["accuracy"]["tflite_correct"],
            "keras_float": m["accuracy"]["keras_float"], "keras_qat": m["accuracy"]["keras_qat"],
            "bytes": m["bytes"], "params": m["params"], "macs": m["macs"], "sha256": m["sha256"]}


# -- distill ----------------------------------------------------------------------------------
def run_distill(cfg: TrainConfig, data_dir: str | None, out: str, *, teacher: str | None,
                teacher_arch: str, teacher_epochs: int, temperature: float, alpha: float) -> dict:
    """Train the student (``cfg.arch``) twice from the same initial weights on the same batches
    for the same epochs - once on the labels alone, once distilled from the teacher - then QAT +
    INT8 + evaluation for both.  ``out``: the distilled model (model.tflite ...), the plain one in
    ``baseline/``, ``teacher.h5`` when trained here, and ``distill.json``."""
    from host.distill import Distiller

    t_start = time.monotonic()
    if temperature <= 0:
        raise UsageError(f"--temperature must be > 0 (got {temperature})")
    if not 0.0 <= alpha <= 1.0:
        raise UsageError(f"--alpha must be in [0, 1] (got {alpha})")
    check_out_dir(out)
    archs.build(cfg.arch)
    if not teacher:
        archs.build(teacher_arch)
    data = load_mnist(data_dir)
    set_seed(cfg.seed)
    if teacher:
        teacher_model = load_keras(teacher)
        teacher_desc = {"path": str(teacher),
                        "arch": teacher_model.name if teacher_model.name in archs.ARCHS else None}
    else:
        print(f"== teacher: training {teacher_arch} for {teacher_epochs} epochs")
        teacher_model = archs.build(teacher_arch, cfg.l2)
        fit(teacher_model, data, cfg, teacher_epochs, cfg.lr)
        teacher_desc = {"arch": teacher_arch, "epochs": teacher_epochs}
    teacher_desc |= {"params": archs.count_params(teacher_model), "macs": archs.count_macs(teacher_model),
                     "keras_accuracy": keras_accuracy(teacher_model, data)}
    print(f"== teacher test accuracy {teacher_desc['keras_accuracy']:.4f}")

    students, hists = {}, {}
    for kind in ("plain", "distilled"):
        set_seed(cfg.seed)  # same initial weights, same augmented batches
        student = archs.build(cfg.arch, cfg.l2)
        print(f"== student ({kind}): {cfg.arch}, {cfg.epochs} epochs"
              + (f", T={temperature}, alpha={alpha}" if kind == "distilled" else ""))
        trainee = Distiller(student, teacher_model, temperature, alpha) if kind == "distilled" else student
        hists[kind] = fit(trainee, data, cfg, cfg.epochs, cfg.lr)
        students[kind] = student

    manifests = {}
    with Staging(out, "distill") as st:
        for kind, folder in (("plain", "baseline"), ("distilled", "")):
            acc = keras_accuracy(students[kind], data)
            set_seed(cfg.seed)
            manifests[kind] = qat_int8_artifacts(
                st, folder, students[kind], students[kind], data, cfg, {"float": hists[kind]},
                arch=cfg.arch, acc_float=acc, t_start=t_start,
                config={**cfg.to_dict(), "data": data.source,
                        "distillation": {"teacher": teacher_desc, "temperature": temperature, "alpha": alpha}
                        if kind == "distilled" else None})
        if not teacher:
            teacher_model.save(st.path("teacher.h5"), include_optimizer=False)
        doc = _doc("distill", teacher=teacher_desc, student_arch=cfg.arch, temperature=temperature,
                   alpha=alpha, epochs=cfg.epochs, qat_epochs=cfg.qat_epochs, limit=cfg.limit, seed=cfg.seed,
                   students={k: _int8_summary(m) for k, m in manifests.items()},
                   gain_int8=manifests["distilled"]["accuracy"]["tflite"] - manifests["plain"]["accuracy"]["tflite"],
                   wall_seconds=round(time.monotonic() - t_start, 1))
        _write(st.path("distill.json"), doc)
    s = doc["students"]
    print(f"\n  {'student':<11}{'Keras float':>12}{'INT8 .tflite':>14}")
    for k in ("plain", "distilled"):
        print(f"  {k:<11}{s[k]['keras_float']:>12.4f}{s[k]['int8_accuracy']:>14.4f}")
    print(f"  distillation changed INT8 accuracy by {100 * doc['gain_int8']:+.2f} points "
          f"(teacher {teacher_desc['keras_accuracy']:.4f}); {Path(out) / 'distill.json'}")
    return doc


# -- prune-channels ---------------------------------------------------------------------------
def run_prune_channels(model_path: str, keep: float, cfg: TrainConfig, data_dir: str | None, out: str,
                       repeats: int = 9) -> dict:
    """Remove the lowest-|gamma| channels of every conv block, fine-tune, then QAT + INT8 - and
    the same QAT + INT8 for the unpruned model, so before and after are made alike.  ``out``:
    the pruned model (model.tflite ...), the unpruned one in ``before/``, ``prune_channels.json``."""
    from device.bench import interleaved_p50, ratio_spread
    from host.channels import channel_scores, edge_widths, keep_indices, shrink

    t_start = time.monotonic()
    check_out_dir(out)
    model = load_keras(model_path)
    widths = edge_widths(model)
    idx = keep_indices(channel_scores(model), keep)
    data = load_mnist(data_dir)
    set_seed(cfg.seed)
    acc_before = keras_accuracy(model, data)
    small = shrink(model, idx)
    acc_cut = keras_accuracy(small, data)
    new_widths = tuple(len(v) for v in idx.values())
    print(f"== channels {widths} -> {new_widths} (kept by |BN gamma|); accuracy {acc_before:.4f} -> "
          f"{acc_cut:.4f} before fine-tuning; fine-tuning {cfg.epochs} epochs")
    hist = fit(small, data, cfg, cfg.epochs, cfg.lr)
    acc_ft = keras_accuracy(small, data)
    with Staging(out, "prune-channels") as st:
        set_seed(cfg.seed)
        after = qat_int8_artifacts(st, "", small, small, data, cfg, {"finetune": hist}, arch="edge",
                                   acc_float=acc_ft, t_start=t_start,
                                   config={**cfg.to_dict(), "from": str(model_path), "data": data.source},
                                   extra={"widths": list(new_widths), "channel_pruning": {
                                       "criterion": "BatchNorm |gamma|", "keep": keep, "widths_before": list(widths)}})
        set_seed(cfg.seed)
        before = qat_int8_artifacts(st, "before", model, model, data, cfg, {}, arch="edge",
                                    acc_float=acc_before, t_start=t_start,
                                    config={**cfg.to_dict(), "from": str(model_path), "data": data.source},
                                    extra={"widths": list(widths)})
        print(f"== latency: before and after, interleaved, {repeats} repeats")
        lat = interleaved_p50({"before": st.dir / "before" / "model.tflite", "after": st.dir / "model.tflite"},
                              repeats=repeats, runs=1000)
        doc = _doc("prune_channels", source=str(model_path), criterion="BatchNorm |gamma| per channel",
                   keep=keep, widths_before=list(widths), widths_after=list(new_widths),
                   finetune_epochs=cfg.epochs, qat_epochs=cfg.qat_epochs, limit=cfg.limit,
                   keras_accuracy={"before": acc_before, "cut_no_finetune": acc_cut, "after_finetune": acc_ft},
                   before=_int8_summary(before), after=_int8_summary(after),
                   latency_ms_single_thread={"before_per_repeat": lat["before"], "after_per_repeat": lat["after"],
                                             "before": float(np.median(lat["before"])),
                                             "after": float(np.median(lat["after"])),
                                             "speedup": ratio_spread(lat["before"], lat["after"])},
                   wall_seconds=round(time.monotonic() - t_start, 1))
        _write(st.path("prune_channels.json"), doc)
    b, a, sp = doc["before"], doc["after"], doc["latency_ms_single_thread"]
    print(f"\n  {'':<16}{'before':>12}{'after':>12}")
    for label, key, fmt in (("params", "params", "{:,}"), ("MACs", "macs", "{:,}"), ("INT8 bytes", "bytes", "{:,}"),
                            ("INT8 accuracy", "int8_accuracy", "{:.4f}")):
        print(f"  {label:<16}{fmt.format(b[key]):>12}{fmt.format(a[key]):>12}")
    print(f"  {'latency p50 ms':<16}{sp['before']:>12.4f}{sp['after']:>12.4f}   "
          f"{sp['speedup']['median']:.2f}x faster (min {sp['speedup']['min']:.2f}, max {sp['speedup']['max']:.2f})")
    return doc


# -- export-onnx ------------------------------------------------------------------------------
def run_export_onnx(model_path: str, data_dir: str | None, out: str, opset: int = 17, threads: int = 1,
                    min_agreement: float = 0.999) -> dict:
    """``model.onnx`` + the TFLite float32 conversion of the same model, both run one image at a
    time on all test images; predictions must agree on >= ``min_agreement``.  Raises UsageError
    (exit 2) on a bad model; returns the report with ``pass``."""
    from device.runtime import Model, dist_version
    from host.convert import convert
    from host.onnx_export import INPUT_NAME, check_opset, latency_summary, onnx_session, run_one_by_one, to_onnx

    check_out_dir(out)
    check_opset(opset)
    model = load_keras(model_path)
    data = load_mnist(data_dir)
    x = to_float(data.x_test).reshape(-1, 28, 28)
    print(f"== exporting {model_path} to ONNX (opset {opset}) and TFLite float32")
    onnx_bytes = to_onnx(model, opset)
    tflite = convert(model, "float32", "float32")
    with Staging(out, "export-onnx") as st:
        st.path("model.onnx").write_bytes(onnx_bytes)
        st.path("float32.tflite").write_bytes(tflite)
        sess = onnx_session(onnx_bytes, threads)
        print(f"== running both on the {len(x):,} test images, one at a time, {threads} thread(s)")
        p_onnx, t_onnx = run_one_by_one(lambda img: sess.run(None, {INPUT_NAME: img.reshape(1, 28, 28, 1)})[0][0], x)
        tfl = Model(st.dir / "float32.tflite", threads=threads, verify=False)
        p_tfl, t_tfl = run_one_by_one(tfl.predict, x)
        a, b = p_onnx.argmax(1), p_tfl.argmax(1)
        doc = _doc("export_onnx", source=str(model_path), opset=opset, threads=threads,
                   images=len(x), onnx_bytes=len(onnx_bytes), tflite_float32_bytes=len(tflite),
                   agreement=float(np.mean(a == b)), disagreements=int(np.sum(a != b)),
                   max_abs_prob_diff=float(np.abs(p_onnx - p_tfl).max()),
                   accuracy={"onnx": float(np.mean(a == data.y_test)), "tflite_float32": float(np.mean(b == data.y_test))},
                   latency_ms={"onnxruntime": latency_summary(t_onnx), "tflite_float32": latency_summary(t_tfl)},
                   runtimes={"onnxruntime": dist_version("onnxruntime"), "tf2onnx": dist_version("tf2onnx"),
                             "tflite": f"{tfl.backend.name} {tfl.backend.version}"},
                   min_agreement=min_agreement)
        doc["pass"] = doc["agreement"] >= min_agreement
        _write(st.path("onnx.json"), doc)
    lo, lt = doc["latency_ms"]["onnxruntime"], doc["latency_ms"]["tflite_float32"]
    print(f"  same prediction on {doc['agreement']:.2%} of {len(x):,} images ({doc['disagreements']} differ; "
          f"max |p diff| {doc['max_abs_prob_diff']:.2e}); accuracy ONNX {doc['accuracy']['onnx']:.4f}, "
          f"TFLite float32 {doc['accuracy']['tflite_float32']:.4f}")
    print(f"  latency per image p50/p99: onnxruntime {lo['p50']:.4f}/{lo['p99']:.4f} ms, "
          f"TFLite float32 {lt['p50']:.4f}/{lt['p99']:.4f} ms; {Path(out) / 'model.onnx'}")
    return doc


# -- explain ----------------------------------------------------------------------------------
def run_explain(model_path: str, images: list[str], labels_csv: str | None, mnist_index: list[int],
                mnist_errors: int, layer: str | None, data_dir: str | None, out: str,
                wrong_only: bool = False) -> dict:
    """Grad-CAM grid PNG for image files (preprocessed exactly as on the device) and/or MNIST
    test images (by index, and/or the first N the model gets wrong)."""
    from device.classify import expand, read_labels
    from device.preprocess import prepare
    from host.explain import default_layer, grad_cam, save_grid

    if not images and not mnist_index and not mnist_errors:
        raise UsageError("nothing to explain: give image files/folders, --mnist-index or --mnist-errors")
    out_path = Path(out)
    if out_path.suffix.lower() != ".png":
        raise UsageError(f"--out {out} must be a .png file")
    check_output(out_path, "--out")
    model = load_keras(model_path)
    xs, titles, labels = [], [], []
    skipped = []
    if images:
        from device.sources.images import ImageRefused, read_image

        lab = read_labels(labels_csv) if labels_csv else {}
        for f in expand(images):
            try:
                img = read_image(f)   # the device's safe reader: no FIFO, no decompression bomb
            except ImageRefused:
                img = None
            prep = prepare(img) if img is not None else None
            if prep is None or prep.image is None:
                skipped.append(Path(f).name)
                continue
            xs.append(prep.image)
            titles.append(Path(f).name)
            labels.append(lab.get(Path(f).name))
    if mnist_index or mnist_errors:
        data = load_mnist(data_dir)
        x_test = to_float(data.x_test).reshape(-1, 28, 28)
        for i in mnist_index:
            if not 0 <= i < len(x_test):
                raise UsageError(f"--mnist-index {i} is outside 0..{len(x_test) - 1}")
        chosen = list(mnist_index)
        if mnist_errors:
            pred = model.predict(x_test[..., None], batch_size=512, verbose=0).argmax(1)
            chosen += [int(i) for i in np.flatnonzero(pred != data.y_test) if i not in chosen][:mnist_errors]
        for i in chosen:
            xs.append(x_test[i])
            titles.append(f"MNIST test #{i}")
            labels.append(int(data.y_test[i]))
    if not xs:
        raise UsageError(f"no digit found in any of the images ({', '.join(skipped[:5])}...)")
    layer = layer or default_layer(model)
    heats, probs = grad_cam(model, np.stack(xs), layer)
    preds = probs.argmax(1)
    wrong = [t for t, p, l in zip(titles, preds, labels) if l is not None and l != p]
    if wrong_only:
        if not any(l is not None for l in labels):
            raise UsageError("--wrong-only needs labels: --labels CSV for files, or MNIST images")
        keep = [i for i, (p, l) in enumerate(zip(preds, labels)) if l is not None and l != p]
        if not keep:
            print(f"none of the {len(xs)} labelled image(s) is misread; nothing to draw")
            return {"images": 0, "wrong": [], "skipped": skipped, "out": None}
        xs, titles, labels = [xs[i] for i in keep], [titles[i] for i in keep], [labels[i] for i in keep]
        heats, probs = heats[keep], probs[keep]
    png = io.BytesIO()
    save_grid(png, np.stack(xs), heats, probs, titles,
              labels if any(l is not None for l in labels) else None)
    atomic_write_bytes(out_path, png.getvalue())
    print(f"{out_path}: {len(xs)} image(s), Grad-CAM on layer {layer}"
          + (f"; {len(wrong)} misread: {', '.join(wrong[:8])}" if wrong else "")
          + (f"; no digit found in {len(skipped)}: {', '.join(skipped[:5])}" if skipped else ""))
    return {"images": len(xs), "wrong": wrong, "skipped": skipped, "out": str(out_path)}

