"""`poserenet data convert`, `data download` (against a local server) and `table`."""

import hashlib
import http.server
import io
import json
import threading
import zipfile
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import shared

from poserenet.annotations import load_coco_instances
from poserenet.cli import main
from poserenet.download import Archive, download_file, fetch
from poserenet.errors import PoseDataError
from poserenet.meta import LSP14, MPII16

scipy_io = pytest.importorskip("scipy.io")

MPII_NAMES = ["rank", "rkne", "rhip", "lhip", "lkne", "lank", "pelv", "thor", "neck", "head",
              "rwri", "relb", "rsho", "lsho", "lelb", "lwri"]  # fmt: skip


def write_gt_mat(path, items, head_side=40.0):
    """An MPII evaluation file (like gt_valid.mat) for the people of an MPII json list."""
    pos = np.stack([np.asarray(it["joints"], float) for it in items], axis=-1)  # [16, 2, N]
    missing = np.stack([1 - np.asarray(it["joints_vis"]) for it in items], axis=-1)
    head = pos[9]  # head_top, [2, N]
    boxes = np.stack([head - head_side / 2, head + head_side / 2])  # [2 corners, 2, N]
    names = np.empty((1, 16), dtype=object)
    names[0] = MPII_NAMES
    scipy_io.savemat(path, {"dataset_joints": names, "jnt_missing": missing, "pos_gt_src": pos, "headboxes_src": boxes})
    return boxes


def test_convert_mpii_json_with_head_boxes_and_score_pckh(tmp_path, capsys):
    src = shared("mmpose_fixtures", "mpii", "test_mpii.json")
    items = json.loads(src.read_text())
    items[1]["joints_vis"][3] = 0  # one unlabelled joint
    mine = tmp_path / "mpii.json"
    mine.write_text(json.dumps(items))
    gt_mat = tmp_path / "gt_valid.mat"
    write_gt_mat(gt_mat, items)
    out = tmp_path / "mpii_val_coco.json"
    assert main(["data", "convert", "mpii", str(mine), "--images", str(src.parent), "--gt-mat", str(gt_mat), "--out", str(out)]) == 0
    assert "5 people in 5 images, 5 with head boxes" in capsys.readouterr().out
    doc = json.loads(out.read_text())
    a = doc["annotations"][1]
    assert a["keypoints"][9:12] == [0, 0, 0] and a["num_keypoints"] == 15
    # 1-based MATLAB pixels -> 0-based; the center moves down by 15 x scale, as HRNet/mmpose read it.
    assert a["keypoints"][0] == pytest.approx(items[1]["joints"][0][0] - 1)
    assert a["center"][1] == pytest.approx(items[1]["center"][1] + 15 * items[1]["scale"])
    data = load_coco_instances(out, src.parent, MPII16)
    inst = data.instances[1]
    assert inst.head_size == pytest.approx(0.6 * 40 * np.sqrt(2))
    # The crop is the unclipped square of side 200 x scale (the reader does not clip it).
    assert inst.bbox[2] == pytest.approx(200 * items[1]["scale"]) and inst.bbox[3] == inst.bbox[2]

    # Perfect predictions score 100 PCKh; moving every left wrist by 0.6 head sizes halves Wrist.
    res = []
    for ann in doc["annotations"]:
        kp = np.asarray(ann["keypoints"], float).reshape(16, 3)
        kp[15, 0] += 0.6 * 0.6 * 40 * np.sqrt(2)
        res.append({"image_id": ann["image_id"], "category_id": 1, "keypoints": kp.reshape(-1).tolist(), "score": 1.0})
    rfile = tmp_path / "res.json"
    rfile.write_text(json.dumps(res))
    assert main(["metrics", str(out), str(rfile), "--metric", "pckh", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["Head"] == pytest.approx(1.0) and row["Wrist"] == pytest.approx(0.5)
    vis = np.array([it["joints_vis"] for it in items]) > 0
    counted = np.delete(vis, [6, 7], axis=1)  # pelvis and thorax are not in the mean
    assert row["Mean"] == pytest.approx(1 - vis[:, 15].sum() / counted.sum())

    write_gt_mat(gt_mat, items[:4])
    with pytest.raises(PoseDataError, match="4 people, but .*mpii.json has 5"):
        from poserenet.convert import mpii_to_coco

        mpii_to_coco(mine, None, gt_mat)


@pytest.mark.parametrize("layout", ["lsp", "lspet"])
def test_convert_lsp_joints_mat(tmp_path, layout):
    rng = np.random.default_rng(0)
    n = 3
    xy = rng.uniform(20, 80, (n, 14, 2))
    flag = (rng.random((n, 14)) < 0.2).astype(float)
    if layout == "lsp":  # 3x14xN, third row 1 = occluded
        joints = np.concatenate([xy, flag[..., None]], -1).transpose(2, 1, 0)
        names = [f"im{i:04d}.jpg" for i in range(1, n + 1)]
    else:  # 14x3xN, third column 1 = labelled
        joints = np.concatenate([xy, 1 - flag[..., None]], -1).transpose(1, 2, 0)
        names = [f"im{i:05d}.jpg" for i in range(1, n + 1)]
    scipy_io.savemat(tmp_path / "joints.mat", {"joints": joints})
    for name in names:
        cv2.imwrite(str(tmp_path / name), np.zeros((100, 90, 3), np.uint8))
    out = tmp_path / "lsp.json"
    assert main(["data", "convert", "lsp", str(tmp_path / "joints.mat"), "--images", str(tmp_path), "--out", str(out)]) == 0
    data = load_coco_instances(out, tmp_path, LSP14)
    assert len(data.instances) == n
    v = data.instances[0].keypoints[:, 2]
    if layout == "lsp":
        assert set(v) <= {1, 2} and (v == 1).sum() == flag[0].sum()  # occluded joints stay labelled
    else:
        assert set(v) <= {0, 2} and (v == 0).sum() == flag[0].sum()
    x, y, w, h = data.instances[0].bbox
    assert x >= 0 and y >= 0 and x + w <= 89 and y + h <= 99


# --------------------------------------------------------------------------- download
class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """A static server that honours `Range: bytes=N-` (as the dataset hosts do) and can cut a
    response short once, to simulate a dropped connection."""

    cut_after: dict = {}
    no_length: set = set()  # names served without a Content-Length (as some hosts do)
    ranges: list = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start = 0
        rng = self.headers.get("Range")
        if rng:
            self.ranges.append(rng)
            start = int(rng.split("=")[1].split("-")[0])
            if start >= len(data):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        if path.name in self.no_length:
            self.send_header("Connection", "close")
        else:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        cut = self.cut_after.pop(path.name, None)
        self.wfile.write(body[:cut] if cut is not None else body)
        self.close_connection = True


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(RangeHandler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def make_zip(path, files):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    path.write_bytes(buf.getvalue())
    return hashlib.md5(buf.getvalue()).hexdigest()


def test_download_resumes_and_checks(server, tmp_path):
    www, url = server
    payload = np.random.default_rng(0).bytes(300_000)
    (www / "big.bin").write_bytes(payload)
    md5 = hashlib.md5(payload).hexdigest()
    dest = tmp_path / "dl" / "big.bin"
    RangeHandler.cut_after["big.bin"] = 100_000  # the first connection drops
    with pytest.raises(PoseDataError, match="connection lost after 100000 of 300000 bytes; run again to resume"):
        download_file(f"{url}/big.bin", dest, md5, progress=False, timeout=5)
    part = dest.with_name("big.bin.part")
    assert part.stat().st_size == 100_000
    RangeHandler.ranges.clear()
    download_file(f"{url}/big.bin", dest, md5, progress=False)
    assert RangeHandler.ranges == ["bytes=100000-"]  # resumed where it stopped
    assert dest.read_bytes() == payload and not part.exists()
    with pytest.raises(PoseDataError, match=r"big2.bin: checksum mismatch \(md5 .*, expected 0+\)"):
        (www / "big2.bin").write_bytes(payload)
        download_file(f"{url}/big2.bin", tmp_path / "dl" / "big2.bin", "0" * 32, progress=False)
    assert not (tmp_path / "dl" / "big2.bin").exists()
    with pytest.raises(PoseDataError, match="HTTP 404"):
        download_file(f"{url}/nope.zip", tmp_path / "dl" / "nope.zip", None, progress=False)


def test_fetch_unpacks_into_the_config_layout(server, tmp_path):
    www, url = server
    files = {"annotations/person_keypoints_val2017.json": b"{}", "annotations/instances_val2017.json": b"{}"}
    md5 = make_zip(www / "annotations_trainval2017.zip", files)
    md5_val = make_zip(www / "val2017.zip", {"val2017/000000000139.jpg": b"jpeg"})
    spec = {"coco": {
        "annotations": Archive("http://official/annotations_trainval2017.zip", md5, (("annotations", "."),)),
        "val": Archive("http://official/val2017.zip", md5_val, (("val2017", "."),)),
    }}  # fmt: skip
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "mine.json").write_text("keep me")
    lines = []
    fetch("coco", root, mirror=url, progress=False, log=lines.append, datasets=spec)
    assert (root / "annotations" / "person_keypoints_val2017.json").is_file()
    assert (root / "val2017" / "000000000139.jpg").read_bytes() == b"jpeg"
    assert (root / "annotations" / "mine.json").read_text() == "keep me"  # merged, not replaced
    assert not (root / "downloads" / "val2017.zip").exists()  # archives removed after unpacking
    fetch("coco", root, mirror=url, progress=False, log=lines.append, datasets=spec)
    assert any("already in" in line for line in lines)


def test_an_archive_without_a_length_or_checksum_is_verified_before_it_counts(server, tmp_path, capsys):
    """Issue 13: a truncated archive without a published checksum was reused on every rerun,
    and a tar cut at a member boundary unpacked as "done" with files missing."""
    import tarfile

    www, url = server
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name in ("ann/mpii_train.json", "ann/mpii_val.json"):
            info = tarfile.TarInfo(name)
            info.size = 2000
            t.addfile(info, io.BytesIO(b"x" * 2000))
    whole = buf.getvalue()
    (www / "mpii_annotations.tar").write_bytes(whole)
    spec = {"demo": {"annotations": Archive("http://official/mpii_annotations.tar", None, (("**/mpii_*.json", "annotations"),))}}
    root = tmp_path / "demo"
    RangeHandler.no_length.add("mpii_annotations.tar")
    RangeHandler.cut_after["mpii_annotations.tar"] = 512 + 2048  # one whole member, then the connection drops
    with pytest.raises(PoseDataError, match=r"mpii_annotations.tar: the tar archive ends without its end-of-archive blocks .*"
                                            r"the archive was removed, run again to fetch it anew"):  # fmt: skip
        fetch("demo", root, mirror=url, progress=False, log=lambda _: None, datasets=spec)
    assert not (root / ".demo-annotations.done").exists() and not (root / "downloads" / "mpii_annotations.tar").exists()
    fetch("demo", root, mirror=url, progress=False, log=lambda _: None, datasets=spec)  # the rerun fetches it whole
    assert (root / "annotations" / "mpii_val.json").read_bytes() == b"x" * 2000
    RangeHandler.no_length.clear()

    # A downloaded file is reused only with its completion marker; without one it is fetched again.
    dest = tmp_path / "dl" / "mpii_annotations.tar"
    download_file(f"{url}/mpii_annotations.tar", dest, None, progress=False)
    RangeHandler.ranges.clear()
    download_file(f"{url}/mpii_annotations.tar", dest, None, progress=False)
    assert RangeHandler.ranges == []  # marker and size agree: reused
    dest.write_bytes(whole[:3000])  # truncated behind our back, marker now stale
    download_file(f"{url}/mpii_annotations.tar", dest, None, progress=False)
    assert RangeHandler.ranges == ["bytes=3000-"] and dest.read_bytes() == whole


def test_download_command_reports_a_wrong_archive(server, tmp_path, capsys):
    www, url = server
    make_zip(www / "annotations_trainval2017.zip", {"annotations/x.json": b"{}"})  # not the real archive
    args = ["data", "download", "coco", "--root", str(tmp_path / "coco"), "--parts", "annotations", "--mirror", url, "--quiet"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "annotations_trainval2017.zip: checksum mismatch" in err and "expected f4bbac642086de4f52a3fdda2de5fa2c" in err
    assert main(["data", "download", "coco", "--root", str(tmp_path), "--parts", "test"]) == 2
    assert "unknown part(s) ['test']" in capsys.readouterr().err
