"""The segmentation study: U-Net vs SegNet vs DeepLabv3 at 256 px, and at 512 px by padding or resizing.

Every run trains on the same slide-grouped split and is scored on the held-out test slides with
the exported ONNX model (:func:`glomkit.segment.evaluate.evaluate_segmenter`). Finished runs are
skipped when the study is rerun (their model file is the marker), so the study is resumable.

Outputs in OUTDIR: ``results.csv``, ``results.md`` (Dice mean ± sd, mIoU, pixel accuracy),
``per_slide_dice.png``, ``loss_curves.png``, ``runs.json`` and ``models/<run>.onnx``.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

from glomkit.io.atomic import atomic_path, write_text

SETTINGS: list[tuple[int, str]] = [(256, "resize"), (512, "pad"), (512, "resize")]


@dataclass
class StudyConfig:
    data: str | Path
    out: str | Path
    archs: tuple[str, ...] = ("unet", "segnet", "deeplabv3")
    settings: tuple[tuple[int, str], ...] = tuple(SETTINGS)
    encoder: str = "resnet10t"
    epochs: int = 10
    batch: int = 8
    lr: float = 2e-3
    seed: int = 0
    test_fold: int = 4
    max_minutes_per_run: float | None = None
    threads: int | None = 1
    show_progress: bool = True


def run_name(arch: str, size: int, mode: str) -> str:
    return f"{arch}_{size}_{mode}"


def run_segmentation_study(cfg: StudyConfig) -> list[dict]:
    """Train and score every (architecture, size, resize mode); write the tables and figures."""
    from glomkit.segment.evaluate import evaluate_segmenter
    from glomkit.segment.train import SegTrainConfig, train_segmenter

    out = Path(cfg.out)
    (out / "models").mkdir(parents=True, exist_ok=True)
    rows = []
    for arch in cfg.archs:
        for size, mode in cfg.settings:
            name = run_name(arch, size, mode)
            model = out / "models" / f"{name}.onnx"
            if not model.is_file():
                train_segmenter(
                    SegTrainConfig(
                        data=cfg.data,
                        out=model,
                        arch=arch,
                        encoder=cfg.encoder,
                        size=size,
                        resize_mode=mode,
                        epochs=cfg.epochs,
                        batch=cfg.batch,
                        lr=cfg.lr,
                        seed=cfg.seed,
                        resume=True,
                        max_minutes=cfg.max_minutes_per_run,
                        test_fold=cfg.test_fold,
                        threads=cfg.threads,
                        show_progress=cfg.show_progress,
                    )
                )
            rep = evaluate_segmenter(model, cfg.data, split="test")
            from glomkit.models.runtime import read_metadata

            tr = read_metadata(model)["training"]
            rows.append(
                {
                    "run": name,
                    "architecture": arch,
                    "input": f"{size} ({mode})",
                    "dice_mean": rep["dice_mean"],
                    "dice_sd": rep["dice_sd"],
                    "miou": rep["miou"],
                    "pixel_accuracy": rep["pixel_accuracy"],
                    "n_test": rep["n_images"],
                    "epochs_run": tr["epochs_run"],
                    "best_epoch": tr["best_epoch"],
                    "minutes": tr["minutes"],
                    "per_slide_dice": rep["per_slide_dice"],
                    "history": model.with_name(model.stem + ".history.json"),
                }
            )
    write_study_outputs(rows, out)
    return rows


def _table(rows: list[dict]) -> str:
    lines = [
        "| run | architecture | input | Dice mean ± sd | mIoU | pixel accuracy | test images | epochs (best) | minutes |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['run']} | {r['architecture']} | {r['input']} | {r['dice_mean']:.3f} ± {r['dice_sd']:.3f} "
            f"| {r['miou']:.3f} | {r['pixel_accuracy']:.3f} | {r['n_test']} | {r['epochs_run']} ({r['best_epoch']}) "
            f"| {r['minutes']} |"
        )
    return "\n".join(lines) + "\n"


def write_study_outputs(rows: list[dict], out: Path) -> None:
    """results.csv, results.md, runs.json, per_slide_dice.png, loss_curves.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    out = Path(out)
    cols = ["run", "architecture", "input", "dice_mean", "dice_sd", "miou", "pixel_accuracy", "n_test"]
    cols += ["epochs_run", "best_epoch", "minutes"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{r[k]:.4f}" if isinstance(r[k], float) else r[k]) for k in cols})
    write_text(out / "results.csv", buf.getvalue())
    write_text(out / "results.md", _table(rows))
    write_text(
        out / "runs.json",
        json.dumps(
            [{k: (str(v) if isinstance(v, Path) else v) for k, v in r.items()} for r in rows], indent=1
        ),
    )

    slides = sorted({s for r in rows for s in r["per_slide_dice"]})
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(slides)), 4))
    width = 0.8 / max(1, len(rows))
    for i, r in enumerate(rows):
        vals = [r["per_slide_dice"].get(s, np.nan) for s in slides]
        ax.bar(np.arange(len(slides)) + i * width, vals, width, label=r["run"])
    ax.set_xticks(np.arange(len(slides)) + width * (len(rows) - 1) / 2, slides, rotation=20)
    lo = min((v for r in rows for v in r["per_slide_dice"].values()), default=0.0)
    ax.set_ylim(max(0.0, lo - 0.05), 1.0)
    ax.set_ylabel("mean Dice (held-out test slide)")
    ax.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    with atomic_path(out / "per_slide_dice.png") as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for r in rows:
        hp = Path(r["history"])
        if not hp.is_file():
            continue
        hist = json.loads(hp.read_text())
        ep = [h["epoch"] for h in hist]
        axes[0].plot(ep, [h["train_loss"] for h in hist], label=f"{r['run']} train")
        axes[0].plot(ep, [h["val_loss"] for h in hist], "--", label=f"{r['run']} val")
        axes[1].plot(ep, [h["val_dice"] for h in hist], label=r["run"])
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("BCE + Dice loss")
    axes[1].set_xlabel("epoch")
    axes[1].set_ylabel("validation Dice")
    axes[0].legend(fontsize=6)
    axes[1].legend(fontsize=6)
    fig.tight_layout()
    with atomic_path(out / "loss_curves.png") as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
