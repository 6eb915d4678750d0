"""The review web app over HTTP (Starlette's test client): pages, tiles, the API and its guards."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from _review_data import SIZE, make_output

pytest.importorskip("starlette", reason="the 'review' extra is not installed")
pytest.importorskip("httpx", reason="Starlette's test client needs httpx")

from starlette.testclient import TestClient  # noqa: E402

from glomkit.review.server import MAX_BODY_BYTES, create_app  # noqa: E402
from glomkit.review.session import ReviewSession  # noqa: E402


@pytest.fixture()
def env(tmp_path: Path):
    out = make_output(tmp_path)
    session = ReviewSession(out, reviewer="t")
    client = TestClient(create_app(session), base_url="http://127.0.0.1:8765")
    return out, session, client


def test_page_and_vendored_assets(env) -> None:
    _, _, c = env
    page = c.get("/")
    assert page.status_code == 200 and "static/openseadragon.min.js" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert "http" not in page.text.replace("http-equiv", "")  # no CDN
    for name in ("openseadragon.min.js", "review.js", "review.css", "openseadragon-LICENSE.txt"):
        assert c.get(f"/static/{name}").status_code == 200


@pytest.mark.slow
def test_tiles_cover_the_slide_at_every_level(env) -> None:
    _, _, c = env
    info = c.get("/api/slide").json()
    w, h = SIZE
    assert (info["width"], info["height"], info["max_level"]) == (w, h, 11)  # 2**11 >= 1600
    top = c.get(f"/tiles/{info['max_level']}/6_4.jpg")  # the last tile: 1600-1536 x 1200-1024
    assert top.status_code == 200 and top.headers["content-type"] == "image/jpeg"
    img = cv2.imdecode(np.frombuffer(top.content, np.uint8), cv2.IMREAD_COLOR)
    assert img.shape[:2] == (h - 4 * 256, w - 6 * 256)
    one = cv2.imdecode(np.frombuffer(c.get("/tiles/0/0_0.jpg").content, np.uint8), cv2.IMREAD_COLOR)
    assert one.shape[:2] == (1, 1)
    # a detection's disc is darker than the background at full resolution (x=300, y=250 in tile 1_0)
    t = cv2.imdecode(np.frombuffer(c.get("/tiles/11/1_0.jpg").content, np.uint8), cv2.IMREAD_COLOR)
    assert t[250, 300 - 256].mean() < t[20, 200].mean() - 40
    for bad in ("/tiles/11/7_0.jpg", "/tiles/12/0_0.jpg", "/tiles/-1/0_0.jpg", "/tiles/11/0_0.png"):
        assert c.get(bad).status_code == 404, bad


@pytest.mark.slow
@pytest.mark.parametrize(
    "path",
    [
        "/static/../summary.json",
        "/static/%2e%2e/session.py",
        "/static/..%2fsession.py",
        "/static/%2e%2e/%2e%2e/%2e%2e/slide.png",
        "/static//etc/passwd",
        "/tiles/11/../../summary.json",
        "/slide.png",
        "/summary.json",
        "/patch/2.png",  # no patch for that id
        "/patch/..%2fsummary.json",
    ],
)
def test_path_traversal_is_refused(env, path: str) -> None:
    _, _, c = env
    r = c.get(path)
    assert r.status_code == 404, (path, r.status_code)
    assert b'"stem"' not in r.content and b"import" not in r.content


@pytest.mark.slow
def test_patch_of_a_glomerulus(env) -> None:
    out, session, c = env
    r = c.get("/patch/1.png")
    assert r.status_code == 200 and r.content == (out / "patches/normal/slide_1.png").read_bytes()
    session.items[1].patch = "../../slide.png"  # a forged path outside the folder
    assert c.get("/patch/1.png").status_code == 404


def test_operations_over_http(env) -> None:
    out, _, c = env
    r = c.post("/api/op", json={"op": "relabel", "id": 5, "label": "disappearing"})
    assert r.status_code == 200
    body = r.json()
    assert body["item"]["label"] == "disappearing" and body["item"]["status"] == "relabelled"
    assert body["counts"]["counts"]["disappearing"] == 1 and body["counts"]["ggs_percent"] == 40.0
    assert (out / "review" / "slide_reviewed.geojson").is_file()
    items = c.get("/api/items").json()["items"]
    assert [i["label"] for i in items if i["id"] == 5] == ["disappearing"]


def test_request_guards(env) -> None:
    out, _, c = env
    post = "/api/op"
    assert (
        c.post(post, content=b'{"op":"accept","id":1}', headers={"content-type": "text/plain"}).status_code
        == 415
    )
    big = json.dumps({"op": "accept", "id": 1, "pad": "x" * MAX_BODY_BYTES})
    assert c.post(post, content=big, headers={"content-type": "application/json"}).status_code == 413
    assert c.post(post, content=b"{nope", headers={"content-type": "application/json"}).status_code == 400
    nan = b'{"op":"add","x":NaN,"y":1,"radius":3}'
    assert c.post(post, content=nan, headers={"content-type": "application/json"}).status_code == 400
    r = c.post(post, json={"op": "relabel", "id": 1, "label": "<script>"})
    assert r.status_code == 400 and "class of the scheme" in r.json()["error"]
    for body in ({"op": []}, [1, 2], "accept", {"op": "add", "x": {"a": 1}, "y": 1, "radius": 3}):
        assert c.post(post, json=body).status_code == 400, body
    assert c.get("/api/op").status_code == 405
    assert c.get("/api/slide", headers={"host": "evil.example:8765"}).status_code == 400  # DNS rebinding
    assert not (out / "review").exists()  # nothing was saved by refused requests


@pytest.mark.slow
def test_tiles_of_a_real_svs(svs_path: Path) -> None:
    from glomkit.review.tiles import DeepZoomTiles
    from glomkit.slide.reader import Slide

    with Slide(svs_path) as slide:
        tiles = DeepZoomTiles(slide)
        top = tiles.max_level
        assert 2 ** (top - 1) < max(slide.width, slide.height) <= 2**top
        cols, rows = tiles.tile_count(top)
        last = cv2.imdecode(np.frombuffer(tiles.tile(top, cols - 1, rows - 1), np.uint8), cv2.IMREAD_COLOR)
        assert last.shape[:2] == (slide.height - (rows - 1) * 256, slide.width - (cols - 1) * 256)
        small = cv2.imdecode(np.frombuffer(tiles.tile(top - 4, 0, 0), np.uint8), cv2.IMREAD_COLOR)
        assert small.std() > 5  # tissue, not a blank tile


def _start_cli(args: list[str]):
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    cmd = [sys.executable, "-c", "from glomkit.cli import main; main()", "review", *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


@pytest.mark.slow
def test_review_command_serves_locally_and_warns_for_other_hosts(tmp_path: Path) -> None:
    import urllib.request

    out = make_output(tmp_path)
    proc = _start_cli([str(out), "--port", "0", "--reviewer", "cli"])
    try:
        first = proc.stdout.readline()
        assert first.startswith("starting the review of slide: 6 detections")
        url = proc.stdout.readline().split()[1]
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url + "api/slide", timeout=20) as r:
            assert json.load(r)["reviewer"] == "cli"
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    proc = _start_cli([str(out), "--port", "0", "--host", "0.0.0.0"])
    try:
        warning = proc.stderr.readline()
        assert "warning: listening on 0.0.0.0" in warning
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    proc = _start_cli([str(tmp_path / "nothing")])
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and err.strip().count("\n") == 0 and "no such output folder" in err
