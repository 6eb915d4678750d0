"""Screenshots of the review app for docs/REVIEW.md, taken in headless Chromium (as the browser test).

The synthetic demo slide has ground truth with the three GGS subtypes, so the script reviews it as
a pathologist would, through the keyboard: each detection is relabelled to its true class (or
rejected when it matches no glomerulus) and each missed glomerulus is drawn. Then it recounts and
prints the model's, the reviewed and the true GGS percentages.

    glomkit demo -o demo_out
    python benchmarks/review_screenshots.py demo_out/demo_slide --truth demo_out/demo_slide_truth.csv -o docs/images
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_review_browser import chromium, load, press, screen_xy, serve, wait_js  # noqa: E402

from glomkit.io.table import read_table  # noqa: E402
from glomkit.review.recount import describe, recount  # noqa: E402


def save(driver, path: Path) -> None:
    png = np.frombuffer(driver.get_screenshot_as_png(), np.uint8)
    cv2.imwrite(str(path), cv2.imdecode(png, cv2.IMREAD_COLOR), [cv2.IMWRITE_JPEG_QUALITY, 80])
    print(f"wrote {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--truth", type=Path, required=True)
    ap.add_argument("-o", "--out", type=Path, default=Path("docs/images"))
    args = ap.parse_args()
    from selenium.webdriver.common.action_chains import ActionChains

    truth = read_table(args.truth)
    dets = read_table(args.folder / f"{args.folder.name}_glomeruli.csv")
    args.out.mkdir(parents=True, exist_ok=True)
    matched: set[int] = set()
    with serve(args.folder, reviewer="pathologist") as url, chromium() as d:
        load(d, url, len(dets))
        save(d, args.out / "review_overview.jpg")
        classes = d.execute_script("return window.glomkitReview.classes.map(c => c.name)")
        press(d, "j")
        shot_taken = False
        for det in sorted(dets, key=lambda r: r["id"]):
            gid = int(det["id"])
            wait_js(d, f"window.glomkitReview.selected === {gid}")
            near = [t for t in truth if np.hypot(t["x"] - det["x"], t["y"] - det["y"]) < t["radius"]]
            if near:
                matched.add(int(near[0]["id"]))
                key = str(classes.index(near[0]["label"]) + 1)
            else:
                key = "r"
            press(d, key)
            wait_js(d, f"window.glomkitReview.items.get({gid}).status !== 'unreviewed'")
            if not shot_taken and near and near[0]["label"] not in ("normal", det["label"]):
                press(d, "k")  # back to it, to show the relabelled glomerulus and its patch
                wait_js(d, f"window.glomkitReview.selected === {gid}")
                d.execute_script("window.glomkitReview.viewer.viewport.applyConstraints(true)")
                wait_js(d, "window.glomkitReview.viewer.world.getItemAt(0).getFullyLoaded()")
                save(d, args.out / "review_relabel.jpg")
                press(d, "j")
                shot_taken = True
        for t in truth:
            if int(t["id"]) in matched or not t["is_glomerulus"]:
                continue  # found, or a decoy the detector rightly missed
            d.execute_script("window.glomkitReview.viewer.viewport.goHome(true)")
            n = d.execute_script("return window.glomkitReview.items.size")
            press(d, "d")
            cx, cy = screen_xy(d, t["x"], t["y"])
            ex, _ = screen_xy(d, t["x"] + t["radius"], t["y"])
            chain = ActionChains(d, duration=50)
            pointer = chain.w3c_actions.pointer_action
            pointer.move_to_location(cx, cy).pointer_down()
            for k in range(1, 6):
                pointer.move_to_location(cx + (ex - cx) * k // 5, cy)
            pointer.pointer_up()
            chain.perform()
            wait_js(d, f"window.glomkitReview.items.size === {n + 1}")
            key = str(classes.index(t["label"]) + 1)
            if t["label"] != "normal":
                press(d, key)
                wait_js(
                    d,
                    f"window.glomkitReview.items.get(window.glomkitReview.selected).label === '{t['label']}'",
                )
        d.execute_script("window.glomkitReview.viewer.viewport.goHome(true)")
        wait_js(d, "window.glomkitReview.viewer.world.getItemAt(0).getFullyLoaded()")
        save(d, args.out / "review_done.jpg")
        summary = recount(args.folder)
        d.get((args.folder / "review" / "report.html").resolve().as_uri())
        save(d, args.out / "review_report.jpg")
    n_true = sum(1 for t in truth if t["is_glomerulus"])
    ggs_true = sum(1 for t in truth if t["ggs_probability"] >= 0.5 and t["is_glomerulus"])
    print("reviewed:", describe(summary))
    print(f"truth:    GGS {100 * ggs_true / n_true:.1f} %: {ggs_true} sclerosed of {n_true} glomeruli")


if __name__ == "__main__":
    main()
