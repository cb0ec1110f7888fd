"""The Kaggle notebook runs top to bottom (CPU, gloo, tiny parameters), and the data-set
download options: their offline and missing-extra paths, and turning a `datasets` split into
a training set."""

import importlib.util
import os

import nbformat
import pytest
from helpers import REPO, run_main
from nbclient import NotebookClient
from PIL import Image

from animegan_ignite.data.download import DONE_MARKER, export_image_split
from animegan_ignite.data.loading import make_split
from animegan_ignite.runs.history import read_history, split_history

NOTEBOOK = REPO / "notebooks" / "kaggle_dual_t4.ipynb"


def _execute_notebook(folder, output_dir, epochs, resume_from=None):
    """Run the notebook top to bottom with the parameters cell's values overridden."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    params = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    overrides = f'''
DATA_DIR = None
OUTPUT_DIR = {str(output_dir)!r}
EPOCHS = {epochs}
BATCH_SIZE = 8
BACKEND = "gloo"
NPROC = 2
EXTRA_ARGS = ["--ngf", "8", "--ndf", "8", "--synthetic-size", "96", "--eval-size", "16",
              "--inception-weights", "pool3", "--num-workers", "0", "--snapshot-every", "3"]
INSTALL_FROM = None
REFRESH_SECONDS = 1
RESUME_FROM = {str(resume_from) if resume_from else None!r}
'''
    nb.cells.insert(params + 1, nbformat.v4.new_code_cell(overrides))  # as papermill does
    NotebookClient(nb, timeout=900, kernel_name="python3",
                   resources={"metadata": {"path": str(folder)}}).execute()  # raises on error
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)  # plots and faces shown inline


@pytest.mark.slow
@pytest.mark.xdist_group("gloo")
def test_kaggle_notebook_runs_on_cpu_and_a_second_session_continues_the_run(tmp_path):
    first, second = tmp_path / "session1" / "run", tmp_path / "session2" / "run"
    first.parent.mkdir()
    second.parent.mkdir()
    _execute_notebook(first.parent, first, epochs=1)
    assert (first.parent / "new_faces.png").exists()
    assert (first / "plots" / "summary.png").exists()
    assert (first.parent / "model" / "model.safetensors").exists()  # the base others fine-tune
    before = [r for r in read_history(first) if r["kind"] != "end"]  # the resumed run is not ended
    # The next session: the first one's output added as (read-only) input, two epochs asked for.
    _execute_notebook(second.parent, second, epochs=2, resume_from=first)
    iters, epochs = split_history(read_history(second))
    assert [e["epoch"] for e in epochs] == [1, 2]
    assert [r["iteration"] for r in iters] == list(range(1, iters[-1]["iteration"] + 1))
    assert read_history(second)[:len(before)] == before and read_history(first)[:-1] == before
    assert "resumed at epoch 1," in (second.parent / "train_stdout.log").read_text()


def test_download_kaggle_without_the_extra_is_a_one_line_error(tmp_path):
    if importlib.util.find_spec("kagglehub") is not None:
        pytest.skip("kagglehub is installed here")
    r = run_main("train", "--download", "kaggle", "--output-dir", tmp_path / "run")
    assert r.returncode == 2 and "pip install 'animegan-ignite[kaggle]'" in r.stderr
    assert "--data-dir" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_download_hf_offline_is_a_one_line_error_pointing_to_data_dir(tmp_path):
    env_offline = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path)}
    os.environ.update(env_offline)
    try:
        r = run_main("train", "--download", "hf:someone/anime-faces", "--cache-dir", tmp_path / "c",
                    "--output-dir", tmp_path / "run")
    finally:
        for k in env_offline:
            os.environ.pop(k)
    assert r.returncode == 2, r.stderr
    assert "could not load it" in r.stderr and "--data-dir" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "run").exists()


def test_bad_download_spec_exits_2(tmp_path):
    r = run_main("train", "--download", "ftp://x", "--output-dir", tmp_path / "run")
    assert r.returncode == 2 and "expected 'kaggle' or 'hf:NAME'" in r.stderr


def test_a_datasets_split_becomes_a_training_folder(tmp_path):
    datasets = pytest.importorskip("datasets")
    images = [Image.new("RGB" if i % 2 else "L", (80, 72), (i * 7) % 255) for i in range(40)]
    split = datasets.Dataset.from_dict({"image": images, "label": list(range(40))}).cast_column(
        "image", datasets.Image())
    folder = export_image_split(split, tmp_path / "exported")
    assert (folder / DONE_MARKER).exists()
    assert len(list((folder / "images").glob("*.png"))) == 40
    train_eval = make_split(str(folder), eval_size=8, batch_size=8, seed=0)
    assert len(train_eval.train) == 32 and train_eval.train[0][0].shape == (3, 64, 64)
    no_images = datasets.Dataset.from_dict({"text": ["a", "b"]})
    with pytest.raises(ValueError, match="no image column"):
        export_image_split(no_images, tmp_path / "other")
