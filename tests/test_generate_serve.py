"""Using a trained generator: the generate command (grids, files, latent walks, export) and the
web app, through Flask's test client, a real HTTP client and a headless Chromium against a
running server."""

import io
import json
import shutil
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from helpers import TINY, run_main, start_serve, write_images
from PIL import Image

from animegan_ignite.runs.checkpoints import load_checkpoint, load_generator, resolve_checkpoint
from animegan_ignite.use.webapp import create_app

# its module fixtures (a trained run) are built once, on one worker
pytestmark = pytest.mark.xdist_group("generate_serve")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("gen")
    write_images(root / "data", 120)
    r = run_main("train", "--data-dir", root / "data", "--output-dir", root / "run", "--epochs", "1",
                "--eval-size", "16", "--eval-every", "0", *TINY)
    assert r.returncode == 0, r.stderr
    return root / "run"


def _pixels(path):
    return np.asarray(Image.open(path).convert("RGB"))


def test_same_seed_same_pixels_other_seed_other_faces(run_dir, tmp_path):
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        r = run_main("generate", "--checkpoint", run_dir, "--grid", tmp_path / f"{name}.png",
                    "--num", "9", "--seed", seed)
        assert r.returncode == 0, r.stderr
    a, b, c = (_pixels(tmp_path / f"{n}.png") for n in "abc")
    assert a.shape == (3 * 64 + 4 * 2, 3 * 64 + 4 * 2, 3)  # 3x3 grid with 2 px padding
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_out_dir_gets_n_separate_faces(run_dir, tmp_path):
    r = run_main("generate", "--checkpoint", run_dir, "--out-dir", tmp_path / "faces", "--num", "5")
    assert r.returncode == 0, r.stderr
    files = sorted((tmp_path / "faces").glob("*.png"))
    assert len(files) == 5 and all(Image.open(f).size == (64, 64) for f in files)


def test_interpolation_gif_has_steps_frames_from_one_face_to_the_next(run_dir, tmp_path):
    r = run_main("generate", "--checkpoint", run_dir, "--interpolate", "7", "--gif",
                tmp_path / "walk.gif", "--seed", "10", "--grid", tmp_path / "ends.png", "--num", "1")
    assert r.returncode == 0, r.stderr
    gif = Image.open(tmp_path / "walk.gif")
    assert gif.n_frames == 7
    first = np.asarray(gif.convert("RGB"), dtype=int)
    single = _pixels(tmp_path / "ends.png").astype(int)  # seed 10's face (a 1-face grid)
    assert np.abs(first - single).mean() < 12  # the walk starts at seed 10's face (GIF palette)


def test_export_torchscript_and_onnx_reproduce_the_generator(run_dir, tmp_path):
    r = run_main("generate", "--checkpoint", run_dir, "--export", "torchscript", "--output",
                tmp_path / "g.pt")
    assert r.returncode == 0, r.stderr
    netG = load_generator(load_checkpoint(resolve_checkpoint(run_dir)))
    z = torch.randn(3, netG.nz, 1, 1)
    scripted = torch.jit.load(str(tmp_path / "g.pt"))
    with torch.no_grad():
        torch.testing.assert_close(scripted(z), netG(z))
    onnx = pytest.importorskip("onnx")
    r = run_main("generate", "--checkpoint", run_dir, "--export", "onnx", "--output",
                tmp_path / "g.onnx")
    assert r.returncode == 0, r.stderr
    model = onnx.load(str(tmp_path / "g.onnx"))
    onnx.checker.check_model(model)
    assert [i.name for i in model.graph.input] == ["z"]


@pytest.mark.parametrize("argv, fragment", [
    (["--num", "0", "--grid", "x.png"], "--num 0: must be an integer in 1..256 for --grid"),
    (["--interpolate", "5"], "needs 2 <= STEPS <= 10000 and --gif"),
    ([], "nothing to do"),
])
def test_generate_bad_flags_exit_2(run_dir, tmp_path, argv, fragment):
    r = run_main("generate", "--checkpoint", run_dir, *argv, cwd=tmp_path)
    assert r.returncode == 2 and fragment in r.stderr and "Traceback" not in r.stderr


# --- the web app -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def client(run_dir):
    """The app in this process, through Flask's test client: the same requests and responses."""
    netG = load_generator(load_checkpoint(resolve_checkpoint(run_dir)))
    app = create_app(netG, {"nz": netG.nz, "iteration": 13})

    def get(query):
        response = app.test_client().get(query)
        return response.status_code, response.mimetype, response.data

    return get


@pytest.fixture(scope="module")
def server(run_dir):
    proc, base = start_serve(run_dir)
    yield SimpleNamespace(base=base, pid=proc.pid)
    proc.terminate()
    proc.wait(timeout=30)


def _get(url):
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.headers.get_content_type(), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get_content_type(), e.read()


def test_faces_endpoint_returns_a_decodable_png_grid_reproducible_by_seed(client):
    status, ctype, body = client("/api/faces?seed=5&n=4")
    assert status == 200 and ctype == "image/png"
    image = Image.open(io.BytesIO(body))
    assert image.format == "PNG" and image.size == (2 * 64 + 3 * 2, 2 * 64 + 3 * 2)
    assert client("/api/faces?seed=5&n=4")[2] == body
    assert client("/api/faces?seed=6&n=4")[2] != body


def test_walk_and_info_endpoints(client):
    status, ctype, body = client("/api/walk?a=1&b=2&t=0.25")
    assert status == 200 and Image.open(io.BytesIO(body)).size == (256, 256)
    status, ctype, body = client("/api/info")
    assert status == 200 and json.loads(body)["nz"] == 100


@pytest.mark.parametrize("query, fragment", [
    ("/api/faces?n=0", "n must be in 1..64"),
    ("/api/faces?n=65", "n must be in 1..64"),
    ("/api/faces?seed=abc", "seed must be an integer"),
    ("/api/faces?seed=-1", "seed must be in"),
    ("/api/walk?a=1&b=2&t=2", "t must be in"),
    ("/api/walk?b=2", "missing parameter a"),
])
def test_bad_parameters_get_400_with_a_message(client, query, fragment):
    status, ctype, body = client(query)
    assert status == 400 and ctype == "application/json"
    assert fragment in json.loads(body)["error"]


def _listening(port: int) -> set[str]:
    """The IPv4 addresses a socket listens on at ``port`` (Linux's /proc/net/tcp)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, hex_port = local.split(":")
        if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
            found.add(".".join(str(int(address[i:i + 2], 16)) for i in (6, 4, 2, 0)))
    return found


@pytest.mark.slow
def test_the_server_answers_over_http_and_listens_on_localhost_only(server):
    status, ctype, body = _get(server.base + "/api/faces?seed=5&n=4")
    assert status == 200 and ctype == "image/png" and Image.open(io.BytesIO(body)).format == "PNG"
    assert _get(server.base + "/api/faces?n=0")[0] == 400
    assert _listening(int(server.base.rsplit(":", 1)[1])) == {"127.0.0.1"}  # started without --host


CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.mark.slow
@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="needs Debian's chromium and chromium-driver")
def test_page_in_headless_chromium_new_faces_changes_the_image(server, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        driver.set_window_size(1200, 900)
        driver.get(server.base + "/")
        loaded = "const i = document.getElementById('faces'); return i.complete && i.naturalWidth"
        WebDriverWait(driver, 60).until(lambda d: d.execute_script(loaded))
        img = driver.find_element(By.ID, "faces")
        before_src, before_png = img.get_attribute("src"), img.screenshot_as_png
        driver.find_element(By.ID, "new").click()
        WebDriverWait(driver, 60).until(
            lambda d: img.get_attribute("src") != before_src and d.execute_script(loaded))
        # the new picture is painted once loaded: wait for it to show, not for a fixed time
        WebDriverWait(driver, 30).until(lambda d: img.screenshot_as_png != before_png)
        assert "iteration" in driver.find_element(By.ID, "info").text
        driver.save_screenshot(str(tmp_path / "page.png"))
    finally:
        driver.quit()
