"""Review robustness (issue 23): one server per folder, the Host and Origin checks, deep JSON,
a delete racing a relabel, odd ids in edited files, and an annotation file with no regions."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from _review_data import make_output
from click.testing import CliRunner

from glomkit import GlomkitError
from glomkit.review.lock import ReviewLock
from glomkit.review.recount import recount
from glomkit.review.session import ReviewInputError, ReviewSession, UnknownItemError


@pytest.fixture()
def out(tmp_path: Path) -> Path:
    return make_output(tmp_path)


def test_a_second_server_on_a_folder_is_refused_and_a_dead_ones_lock_taken_over(out: Path) -> None:
    with ReviewLock(out):
        with pytest.raises(
            GlomkitError, match=f"already being reviewed by glomkit review process {os.getpid()}"
        ):
            ReviewLock(out).acquire()
    with ReviewLock(out):  # released: free again
        pass
    code = (
        "import sys, time; from glomkit.review.lock import ReviewLock; "
        "ReviewLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(120)"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(out)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(GlomkitError) as err:
            ReviewLock(out).acquire()
        assert str(out) in str(err.value) and f"process {proc.pid}" in str(err.value)
        assert "\n" not in str(err.value)
    finally:
        proc.kill()
        proc.wait(timeout=20)
    lock = ReviewLock(out)  # the killed holder's lock file is still there: taken over
    assert lock.holder() == (socket.gethostname(), proc.pid)
    lock.acquire()
    assert lock.holder()[1] == os.getpid()
    lock.release()


def test_review_command_refuses_a_second_server(out: Path) -> None:
    pytest.importorskip("uvicorn", reason="the 'review' extra is not installed")
    from glomkit.cli import cli

    with ReviewLock(out):
        res = CliRunner().invoke(cli, ["review", str(out), "--port", "0"])
    assert res.exit_code != 0 and isinstance(res.exception, GlomkitError)
    assert "already being reviewed" in str(res.exception)


def test_allowed_hosts_keep_the_check_on() -> None:
    pytest.importorskip("starlette", reason="the 'review' extra is not installed")
    from glomkit.review.server import LOCAL_HOSTS, allowed_hosts

    assert allowed_hosts("127.0.0.1") == LOCAL_HOSTS
    wide = allowed_hosts("0.0.0.0")
    assert "*" not in wide and wide == LOCAL_HOSTS
    named = allowed_hosts("0.0.0.0", ("scope.lab.example", "10.0.0.7", "fe80::1", "*.lab.example"))
    assert {"scope.lab.example", "10.0.0.7", "fe80::1", "[fe80::1]", "*.lab.example"} <= set(named)
    assert "192.168.1.5" in allowed_hosts("192.168.1.5")
    for bad in ("*", "a b", "x/y", ""):
        with pytest.raises(GlomkitError, match="--allow-host"):
            allowed_hosts("0.0.0.0", (bad,))


@pytest.fixture()
def client(out: Path):
    pytest.importorskip("starlette", reason="the 'review' extra is not installed")
    pytest.importorskip("httpx", reason="Starlette's test client needs httpx")
    from starlette.testclient import TestClient

    from glomkit.review.server import allowed_hosts, create_app

    session = ReviewSession(out, reviewer="t")
    app = create_app(session, allowed_hosts=allowed_hosts("0.0.0.0", ("scope.lab",)))
    return session, TestClient(app, base_url="http://scope.lab:8765")


def test_host_and_origin_checks(client) -> None:
    _, c = client
    assert c.get("/api/slide").status_code == 200  # an allowed name
    assert c.get("/api/slide", headers={"host": "evil.example:8765"}).status_code == 400
    op = {"op": "accept", "id": 2}
    for origin in ("http://evil.example", "http://scope.lab:9999", "https://scope.lab:8765", "null"):
        r = c.post("/api/op", json=op, headers={"origin": origin})
        assert r.status_code == 403, origin
    assert c.post("/api/op", json=op, headers={"sec-fetch-site": "cross-site"}).status_code == 403
    assert c.post("/api/op", json=op, headers={"origin": "http://scope.lab:8765"}).status_code == 200
    assert c.post("/api/op", json=op).status_code == 200  # no Origin: not a browser


def test_deep_json_and_a_gone_id_are_client_errors(client) -> None:
    _, c = client
    deep = b"[" * 8000 + b"]" * 8000
    r = c.post("/api/op", content=deep, headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert c.post("/api/op", json={"op": "delete", "id": 3}).status_code == 200
    r = c.post("/api/op", json={"op": "relabel", "id": 3, "label": "sclerosed"})
    assert r.status_code == 404 and "no glomerulus with id 3" in r.json()["error"]


def test_delete_racing_relabel_never_raises_key_error(out: Path) -> None:
    s = ReviewSession(out, reviewer="t")
    errors: list[BaseException] = []

    def run(op: dict) -> None:
        try:
            s.apply(op)
        except ReviewInputError:
            pass
        except BaseException as exc:  # noqa: BLE001 - the test collects any other failure
            errors.append(exc)

    for gid in (1, 2, 3, 4, 5, 6):
        ts = [
            threading.Thread(target=run, args=({"op": "delete", "id": gid},)),
            threading.Thread(target=run, args=({"op": "relabel", "id": gid, "label": "sclerosed"},)),
        ]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    assert not errors and not s.items
    with pytest.raises(UnknownItemError):
        s.apply({"op": "accept", "id": 1})


@pytest.mark.parametrize("bad_id", ["abc", "²", "١٢", "-1", "1.5", "", "99999999999999999999"])
def test_odd_glomkit_ids_in_an_edited_geojson_are_renumbered(out: Path, tmp_path: Path, bad_id: str) -> None:
    data = json.loads((out / "slide.geojson").read_text())
    for feat in data["features"]:
        feat["properties"].pop("glomkit", None)
        feat["properties"]["metadata"]["glomkit_id"] = bad_id
    edited = tmp_path / "edited.geojson"
    edited.write_text(json.dumps(data, ensure_ascii=False))
    summary = recount(out, annotations=edited)
    assert summary["n_detections"] == 6


def test_recount_of_an_empty_xml_warns_in_one_line(out: Path, tmp_path: Path) -> None:
    from glomkit._cli.review import recount_cmd

    empty = tmp_path / "empty.xml"
    empty.write_text('<?xml version="1.0"?><Annotations MicronsPerPixel="0.5"></Annotations>')
    res = CliRunner().invoke(recount_cmd, [str(out), "--annotations", str(empty)])
    assert res.exit_code == 0, res.output
    warnings = [ln for ln in res.output.splitlines() if "warning" in ln]
    assert len(warnings) == 1 and "no glomeruli or regions found" in warnings[0]
