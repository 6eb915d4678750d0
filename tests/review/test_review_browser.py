"""The review app in a real browser: headless Chromium (Debian's chromium + chromium-driver) via selenium.

Loads the page, sees tiles and circles, rejects one glomerulus, relabels two (keys and the table),
draws a missed one, reloads, deletes one and undoes it, then checks the saved GeoJSON and the
recounted summary.
Set GLOMKIT_REVIEW_SCREENSHOTS=DIR to keep screenshots of the steps.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path

import pytest
from _review_data import DETECTIONS, MISSED, make_output

pytest.importorskip("starlette", reason="the 'review' extra is not installed")
pytest.importorskip("uvicorn", reason="the 'review' extra is not installed")
pytest.importorskip("selenium", reason="selenium is not installed")

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser") if shutil.which(n)), None)
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None or CHROMEDRIVER is None,
        reason="no chromium/chromedriver found (apt-get install chromium chromium-driver)",
    ),
]
# Without these Chromium hangs on a closed network or in a container.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1400,900",
]


@contextmanager
def serve(out: Path, reviewer: str):
    """The review app of ``out`` on a free local port, in a thread; yields its URL."""
    from glomkit.review.server import bind, create_app, make_server, url_of
    from glomkit.review.session import ReviewSession

    app = create_app(ReviewSession(out, reviewer=reviewer))
    sock = bind("127.0.0.1", 0)
    server = make_server(app)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield url_of(sock, "127.0.0.1")
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@contextmanager
def chromium():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="glomkit-chromium-")
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"]:
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_js(driver, expr: str, timeout: float = 30):
    """Wait until the JavaScript expression is truthy; return its value."""
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(
        lambda d: d.execute_script(f"try {{ return {expr}; }} catch (e) {{ return null; }}")
    )


def row_status(driver, gid: int) -> str:
    return driver.execute_script(
        f"const r = document.querySelector('#items tr[data-id=\"{gid}\"]');"
        "return r ? r.lastChild.textContent + ' ' + r.children[1].textContent : null;"
    )


def press(driver, key: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).send_keys(key).perform()


def screen_xy(driver, x: float, y: float) -> tuple[int, int]:
    """Page coordinates of level-0 px (x, y) in the viewer."""
    p = driver.execute_script(
        "const s = window.glomkitReview, v = document.querySelector('#viewer').getBoundingClientRect();"
        f"const q = s.viewer.viewport.imageToViewerElementCoordinates(new OpenSeadragon.Point({x}, {y}));"
        "return [v.left + q.x, v.top + q.y];"
    )
    return round(p[0]), round(p[1])


def shot(driver, name: str) -> None:
    folder = os.environ.get("GLOMKIT_REVIEW_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(folder) / name))


def load(driver, url: str, n_items: int) -> None:
    driver.get(url)
    wait_js(driver, "window.glomkitReview.ready && window.glomkitReview.tilesLoaded > 0")
    wait_js(driver, f"document.querySelectorAll('#overlay .glom circle').length === {n_items}")
    wait_js(driver, "window.glomkitReview.viewer.world.getItemAt(0).getFullyLoaded()")


def test_review_in_chromium(tmp_path: Path) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    from glomkit.io.geojson import read_geojson_features
    from glomkit.review.recount import recount

    out = make_output(tmp_path)
    with serve(out, reviewer="browser test") as url, chromium() as d:
        load(d, url, 6)
        assert wait_js(d, "document.querySelector('#ggs').textContent").startswith("GGS 40.0 %")
        # tiles are real images of the slide, circles sit on the detections
        assert d.execute_script("return window.glomkitReview.tilesLoaded") >= 1
        for gid, x, y, r, *_ in DETECTIONS:
            box = d.execute_script(
                f"const b = window.glomkitReview.items.get({gid}).g.querySelector('circle').getBoundingClientRect();"
                "return [b.left + b.width / 2, b.top + b.height / 2, b.width / 2];"
            )
            (sx, sy), (ex, _) = screen_xy(d, x, y), screen_xy(d, x + r, y)
            assert abs(box[0] - sx) < 3 and abs(box[1] - sy) < 3 and abs(box[2] - (ex - sx)) < 3, gid
        shot(d, "01_loaded.png")

        # click glomerulus 1 on the slide, reject it with 'r'; the view advances to 2
        x, y = screen_xy(d, 300, 250)
        chain = ActionChains(d)
        chain.w3c_actions.pointer_action.move_to_location(x, y).click()
        chain.perform()
        wait_js(d, "window.glomkitReview.selected === 1")
        assert "selected" in d.execute_script(
            "return document.querySelector('#items tr[data-id=\"1\"]').className"
        )
        press(d, "r")
        wait_js(d, "document.querySelector('#items tr[data-id=\"1\"]').lastChild.textContent === 'rejected'")
        wait_js(d, "window.glomkitReview.selected === 2")
        # relabel 2 with a digit key: 4 = solidified (normal, sclerosed, obsolescent, solidified, ...)
        press(d, "4")
        wait_js(
            d, "document.querySelector('#items tr[data-id=\"2\"]').lastChild.textContent === 'relabelled'"
        )
        # relabel 4 from the table: click its row, which zooms to it, then '3' = obsolescent
        d.find_element("css selector", '#items tr[data-id="4"]').click()
        wait_js(d, "window.glomkitReview.selected === 4")
        press(d, "3")
        wait_js(
            d, "document.querySelector('#items tr[data-id=\"4\"]').children[1].textContent === 'obsolescent'"
        )
        shot(d, "02_relabelled.png")

        # draw the missed glomerulus: 'd', then drag from its centre to its edge
        d.execute_script("window.glomkitReview.viewer.viewport.goHome(true)")
        press(d, "d")
        wait_js(d, "window.glomkitReview.drawing")
        cx, cy = screen_xy(d, MISSED[0], MISSED[1])
        ex, ey = screen_xy(d, MISSED[0] + MISSED[2], MISSED[1])
        chain = ActionChains(d, duration=50)
        pointer = chain.w3c_actions.pointer_action
        pointer.move_to_location(cx, cy).pointer_down()
        for k in range(1, 6):
            pointer.move_to_location(cx + (ex - cx) * k // 5, cy)
        pointer.pointer_up()
        chain.perform()
        wait_js(d, "document.querySelectorAll('#overlay .glom circle').length === 7")
        added = d.execute_script(
            "const i = window.glomkitReview.items.get(7); return [i.x, i.y, i.radius, i.status];"
        )
        assert added[3] == "added"
        assert abs(added[0] - MISSED[0]) < 6 and abs(added[1] - MISSED[1]) < 6
        assert abs(added[2] - MISSED[2]) < 8
        wait_js(d, "document.querySelector('#progress').textContent === '4 of 7 reviewed'")
        assert d.find_element("css selector", "#ggs").text.startswith("GGS 60.0 % (3 of 5 glomeruli)")
        shot(d, "03_added.png")

        # the score slider hides detections below it (3: 0.45, 6: 0.33); the added one stays
        d.execute_script(
            "const t = document.querySelector('#threshold'); t.value = 0.5;"
            "t.dispatchEvent(new Event('input'));"
        )
        assert d.execute_script("return document.querySelectorAll('#overlay .glom.hidden').length") == 2
        # a class toggle hides that class's circles and rows
        d.find_element("css selector", '#class-toggles input[data-class="obsolescent"]').click()
        assert d.execute_script("return document.querySelectorAll('#items tr.hidden').length") == 3

        # reload: the review resumes from the server's saved state
        load(d, url, 7)
        assert row_status(d, 1) == "rejected non_glomerular"
        assert row_status(d, 2) == "relabelled solidified"
        assert row_status(d, 4) == "relabelled obsolescent"
        assert row_status(d, 7) == "added normal"
        shot(d, "04_reloaded.png")

        # delete glomerulus 6 from the table with the Delete key
        d.find_element("css selector", '#items tr[data-id="6"]').click()
        wait_js(d, "window.glomkitReview.selected === 6")
        press(d, Keys.DELETE)
        wait_js(d, "!document.querySelector('#items tr[data-id=\"6\"]')")
        assert d.execute_script("return document.querySelectorAll('#overlay .glom circle').length") == 6
        # ... and undo brings it back
        press(d, "u")
        wait_js(d, "document.querySelectorAll('#overlay .glom circle').length === 7")
        assert row_status(d, 6) == "unreviewed non_glomerular"

    feats = {
        p["glomkit"]["id"]: (a, p)
        for a, p in read_geojson_features(out / "review" / "slide_reviewed.geojson")
    }
    assert {k: (a.label, p["review"]["status"]) for k, (a, p) in feats.items()} == {
        1: ("non_glomerular", "rejected"),
        2: ("solidified", "relabelled"),
        3: ("normal", "unreviewed"),
        4: ("obsolescent", "relabelled"),
        5: ("sclerosed", "unreviewed"),
        6: ("non_glomerular", "unreviewed"),
        7: ("normal", "added"),
    }
    assert feats[2][1]["review"]["reviewer"] == "browser test"
    summary = recount(out)
    assert (summary["n_glomeruli"], summary["n_sclerosed"], summary["ggs_percent"]) == (5, 3, 60.0)
    assert summary["reviewed"] is True
    assert json.loads((out / "review" / "summary.json").read_text())["counts"]["solidified"] == 1
