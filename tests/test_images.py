"""Dataset sources (hubselect.profile.sources): local folders, Hub datasets over the local endpoint, odd images."""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hubselect.profile import sources as images
from hubselect.errors import UserError
from hubselect.profile.sources import SkipImage, load_image, load_samples, open_source, to_rgb
from tests.hub_server import READ_TOKEN, make_repo

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


# -- writing odd files ---------------------------------------------------------------------------

def _encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims ``width x height`` pixels but carries almost no data (a decompression bomb)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)   # 8-bit RGB
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
            + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + _png_chunk(b"IEND", b""))


def odd_images() -> dict[str, bytes]:
    """One file per image oddity, with the RGB value its centre pixel must have once converted."""
    rgba = Image.new("RGBA", (16, 16), (255, 0, 0, 0))             # fully transparent red -> white
    rgba.paste((0, 0, 255, 255), (0, 0, 8, 16))                     # opaque blue left half
    la = Image.new("LA", (16, 16), (0, 128))                        # black at half alpha -> grey
    pal = Image.new("P", (16, 16), 1)
    pal.putpalette([0, 255, 0] + [200, 30, 30] + [0, 0, 0] * 254)
    pal.info["transparency"] = 1                                     # index 1 is transparent -> white
    i16 = Image.fromarray(np.full((16, 16), 65535, dtype=np.uint16))  # 16-bit white
    assert i16.mode.startswith("I;16")
    i16_mid = Image.fromarray(np.full((16, 16), 32896, dtype=np.uint16))  # 16-bit middle grey -> 128
    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))            # CMYK red
    return {
        "rgba.png": _encode(rgba, "PNG"),
        "la.png": _encode(la, "PNG"),
        "palette.png": _encode(pal, "PNG", transparency=1),
        "gray16.png": _encode(i16, "PNG"),
        "gray16_mid.png": _encode(i16_mid, "PNG"),
        "cmyk.jpg": _encode(cmyk, "JPEG", quality=95),
        "gray.png": _encode(Image.new("L", (16, 16), 77), "PNG"),
        "onebit.png": _encode(Image.new("1", (16, 16), 1), "PNG"),
        "rgb.webp": _encode(Image.new("RGB", (16, 16), (10, 200, 30)), "WEBP", lossless=True),
    }


EXPECTED_CENTRE = {
    "rgba.png": (255, 255, 255), "la.png": (127, 127, 127), "palette.png": (255, 255, 255),
    "gray16.png": (255, 255, 255), "gray16_mid.png": (128, 128, 128), "cmyk.jpg": (255, 0, 0),
    "gray.png": (77, 77, 77), "onebit.png": (255, 255, 255), "rgb.webp": (10, 200, 30),
}


def bad_files() -> dict[str, bytes]:
    good = _encode(Image.new("RGB", (64, 64), (90, 90, 90)), "JPEG", quality=90)
    return {
        "truncated.jpg": good[: len(good) // 2],
        "text.jpg": b"this is not an image at all\n" * 4,
        "empty.png": b"",
        "bomb.png": png_header_only(100_000, 100_000),      # over Pillow's own limit
        "big.png": png_header_only(9000, 9000),             # under Pillow's limit, over MAX_PIXELS
    }


def write(folder: Path, files: dict[str, bytes | str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
    return folder


# -- decoding one image ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(EXPECTED_CENTRE))
def test_odd_image_modes_become_rgb(name):
    im = load_image(odd_images()[name])
    assert im.mode == "RGB" and im.size == (16, 16)
    got = im.getpixel((12, 8))
    assert all(abs(a - b) <= 3 for a, b in zip(got, EXPECTED_CENTRE[name])), (name, got)


def test_alpha_is_composited_on_white_and_opaque_pixels_kept():
    im = load_image(odd_images()["rgba.png"])
    assert im.getpixel((2, 8)) == (0, 0, 255)
    assert im.getpixel((12, 8)) == (255, 255, 255)


def test_float_and_32bit_modes_scale_to_8_bits():
    f = Image.fromarray(np.full((4, 4), 0.5, dtype=np.float32))
    assert to_rgb(f).getpixel((0, 0)) == (128, 128, 128)
    i32 = Image.fromarray(np.full((4, 4), 65535, dtype=np.int32))
    assert to_rgb(i32).getpixel((0, 0)) == (255, 255, 255)


@pytest.mark.parametrize("name,reason", [("truncated.jpg", "corrupt"), ("text.jpg", "not_an_image"),
                                         ("empty.png", "not_an_image"), ("bomb.png", "too_large"),
                                         ("big.png", "too_large")])
def test_bad_files_raise_skip_with_reason(name, reason):
    with pytest.raises(SkipImage) as info:
        load_image(bad_files()[name])
    assert info.value.reason == reason


def test_missing_file_is_skipped(tmp_path):
    with pytest.raises(SkipImage) as info:
        load_image(tmp_path / "nope.jpg")
    assert info.value.reason == "missing"


def test_exif_orientation_is_applied():
    im = Image.new("RGB", (20, 10), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6                       # rotate 90 degrees clockwise on display
    out = load_image(_encode(im, "JPEG", exif=exif.tobytes()))
    assert out.size == (10, 20)


# -- local folders -----------------------------------------------------------------------------------

def test_folder_converts_oddities_and_counts_skipped(tmp_path):
    folder = write(tmp_path / "odd", {**odd_images(), **bad_files(), "notes.txt": "not an image extension"})
    got = load_samples(str(folder), n=100)
    assert got.kind == "folder" and got.revision is None
    assert len(got.samples) == len(EXPECTED_CENTRE)
    assert all(im.mode == "RGB" for im in got.images)
    assert got.skipped == {"corrupt": 1, "not_an_image": 2, "too_large": 2}


def test_folder_captions_from_metadata_jsonl_and_csv(tmp_path):
    red = _encode(Image.new("RGB", (8, 8), (255, 0, 0)), "PNG")
    write(tmp_path / "ds", {
        "a.png": red, "sub/b.png": red, "sub/c.png": red, "d.png": red,
        "metadata.jsonl": json.dumps({"file_name": "a.png", "text": "caption a"}) + "\n"
                          + json.dumps({"file_name": "d.png", "text": "caption d"}) + "\n",
        "sub/metadata.csv": "file_name,text,url\nb.png,caption b,http://x\nc.png,\"caption, c\",http://y\n",
    })
    src = open_source(tmp_path / "ds")
    assert src.caption_column == "text" and src.size == 4
    got = {s.key: s.caption for s in src.sample(10)}
    assert got == {"a.png": "caption a", "d.png": "caption d", "sub/b.png": "caption b", "sub/c.png": "caption, c"}


def test_folder_caption_column_override_and_errors(tmp_path):
    red = _encode(Image.new("RGB", (8, 8), (255, 0, 0)), "PNG")
    write(tmp_path / "ds", {"a.png": red, "metadata.jsonl": json.dumps(
        {"file_name": "a.png", "text": "t", "long_caption": "a longer caption"}) + "\n"})
    src = open_source(tmp_path / "ds", caption_column="long_caption")
    assert [s.caption for s in src.sample(5)] == ["a longer caption"]
    with pytest.raises(UserError, match="no column 'nope'"):
        open_source(tmp_path / "ds", caption_column="nope")
    write(tmp_path / "bad", {"a.png": red, "metadata.jsonl": json.dumps({"name": "a.png", "text": "t"}) + "\n"})
    with pytest.raises(UserError, match="file_name"):
        open_source(tmp_path / "bad")


def test_folder_splits(tmp_path):
    red = _encode(Image.new("RGB", (8, 8), (255, 0, 0)), "PNG")
    write(tmp_path / "ds", {"train/a.png": red, "train/b.png": red, "test/c.png": red})
    assert open_source(tmp_path / "ds").split == "train"
    assert open_source(tmp_path / "ds").size == 2
    assert [s.key for s in open_source(tmp_path / "ds", split="test").sample(5)] == ["c.png"]
    with pytest.raises(UserError, match="no split folder 'validation'"):
        open_source(tmp_path / "ds", split="validation")


def test_folder_sampling_is_seeded():
    src = open_source(EXAMPLES / "photos")
    first = [s.key for s in src.sample(10, seed=0)]
    assert first == [s.key for s in src.sample(10, seed=0)]
    assert first != [s.key for s in src.sample(10, seed=1)]
    assert len(set(first)) == 10
    assert sorted(s.key for s in src.sample(1000, seed=3)) == sorted(src.files)   # n > size: all of them


class _Size:
    """A picklable transform: the image's size as a tensor (what a probe's transform returns: a tensor)."""

    def __call__(self, im):
        import torch
        return torch.tensor([im.size[0], im.size[1], int(np.asarray(im).sum())])


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("n", [3, 9, 100])
def test_prepared_yields_the_sampled_images_in_order_with_or_without_workers(tmp_path, workers, n):
    """prepared() = sample() then the transform: same keys, same order, same skip counts, same tensors."""
    import torch
    rng = np.random.default_rng(0)
    files = {f"{i:02d}.png": _encode(Image.fromarray(rng.integers(0, 255, (5 + i, 7, 3), dtype=np.uint8)), "PNG")
             for i in range(12)}
    folder = write(tmp_path / "ds", {**files, **bad_files()})
    src = open_source(folder)
    want = list(src.sample(n, seed=4))
    want_skipped = dict(src.skipped)
    timings = {}
    got = list(src.prepared(n, _Size(), seed=4, workers=workers, timings=timings))
    assert [g.key for g in got] == [w.key for w in want] and dict(src.skipped) == want_skipped
    for g, w in zip(got, want):
        assert torch.equal(g.pixels, _Size()(w.image))
    assert timings["workers"] == workers and timings["decode"] > 0 and timings["wait"] > 0


def test_prepared_from_a_hub_stream_matches_sample(hub, hub_root):
    make_repo(hub_root, "org/imgfolder-prepared", imagefolder_repo(6), repo_type="dataset")
    src = open_source("org/imgfolder-prepared")
    want = [(s.key, s.caption) for s in src.sample(4, seed=2)]
    timings = {}
    got = list(src.prepared(4, _Size(), seed=2, workers=2, timings=timings))
    assert [(g.key, g.caption) for g in got] == want and timings["workers"] == 0 and timings["read"] > 0


def test_text_modality_reads_captions_only(tmp_path):
    folder = write(tmp_path / "ds", {"a.jpg": b"not decoded for captions", "b.png": b"",
                                     "metadata.jsonl": json.dumps({"file_name": "a.jpg", "caption": "hello"}) + "\n"})
    src = open_source(folder, need_images=False, need_captions=True)
    got = list(src.sample(5, modality="text"))
    assert [(s.caption, s.image) for s in got] == [("hello", None)]
    assert dict(src.skipped) == {"no_caption": 1}


def test_folder_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images here")
    with pytest.raises(UserError, match="no image files"):
        open_source(tmp_path / "empty")
    with pytest.raises(UserError, match="no such folder"):
        open_source(str(tmp_path / "missing" / "deeper"))
    (tmp_path / "file.jpg").write_bytes(b"x")
    with pytest.raises(UserError, match="is a file"):
        open_source(tmp_path / "file.jpg")
    red = _encode(Image.new("RGB", (8, 8), (255, 0, 0)), "PNG")
    write(tmp_path / "nocap", {"a.png": red})
    with pytest.raises(UserError, match="no captions"):
        open_source(tmp_path / "nocap", need_captions=True)


def test_examples_are_real_small_and_captioned():
    for name in ("photos", "drawings"):
        got = load_samples(str(EXAMPLES / name), n=1000)
        assert len(got.samples) == 24 and got.skipped == {}
        assert all(s.caption for s in got.samples)
    total = sum(p.stat().st_size for p in EXAMPLES.rglob("*") if p.is_file())
    assert total < 1_000_000


# -- Hub datasets over the local endpoint ------------------------------------------------------------------

@pytest.fixture
def hub(hub_server, monkeypatch):
    """The local Hub, with ``datasets``' pause after a stream is closed early cut from 5 s to 0.2 s.

    ``datasets`` sleeps ``SLEEP_TIME_ON_THREADS_SHUTDOWN`` seconds whenever a parquet stream is
    abandoned before its end (to let pyarrow's threads exit, apache/arrow#45214); sampling always
    abandons the stream, and the tests sample often.
    """
    import datasets.config
    monkeypatch.setattr(datasets.config, "SLEEP_TIME_ON_THREADS_SHUTDOWN", 0.2)
    return hub_server


def _jpeg(color) -> bytes:
    return _encode(Image.new("RGB", (24, 24), color), "JPEG", quality=90)


def parquet_dataset(n: int = 12, corrupt: int = 0) -> bytes:
    import datasets
    features = datasets.Features({"image": datasets.Image(), "caption": datasets.Value("string"),
                                  "label": datasets.Value("int64")})
    rows = {"image": [{"bytes": _jpeg((20 * i, 100, 50)) if i >= corrupt else _jpeg((1, 2, 3))[:300],  # truncated
                       "path": f"img{i}.jpg"} for i in range(n)],
            "caption": [f"a photo number {i}" for i in range(n)], "label": list(range(n))}
    buf = io.BytesIO()
    datasets.Dataset.from_dict(rows, features=features).to_parquet(buf)
    return buf.getvalue()


def imagefolder_repo(n: int = 10) -> dict[str, bytes | str]:
    files: dict[str, bytes | str] = {f"train/{i}.jpg": _jpeg((0, 20 * i, 200)) for i in range(n)}
    files["train/broken.jpg"] = b"not a jpeg"
    files["train/metadata.jsonl"] = "".join(json.dumps({"file_name": name, "text": f"blue picture {name}"}) + "\n"
                                            for name in [f"{i}.jpg" for i in range(n)] + ["broken.jpg"])
    files["README.md"] = "---\nlicense: cc0-1.0\n---\n# a test imagefolder\n"
    return files


def test_hub_parquet_dataset_is_streamed_sampled_and_revision_recorded(hub, hub_root):
    make_repo(hub_root, "org/parquet-ds", {"data/train-00000-of-00001.parquet": parquet_dataset(12, corrupt=2)},
              repo_type="dataset")
    from huggingface_hub import HfApi
    sha = HfApi().dataset_info("org/parquet-ds").sha

    got = load_samples("org/parquet-ds", n=8, seed=0)
    assert got.kind == "hub" and got.revision == sha and got.split == "train"
    assert got.image_column == "image" and got.caption_column == "caption"
    assert len(got.samples) == 8 and all(im.size == (24, 24) for im in got.images)
    assert all(s.caption.startswith("a photo number") for s in got.samples)
    again = load_samples("org/parquet-ds", n=8, seed=0)
    assert [s.key for s in again.samples] == [s.key for s in got.samples]

    everything = load_samples("org/parquet-ds", n=100, seed=0)
    assert len(everything.samples) == 10 and everything.skipped == {"corrupt": 2}


def test_hub_imagefolder_dataset_fetches_files_and_captions(hub, hub_root):
    make_repo(hub_root, "org/imgfolder", imagefolder_repo(10), repo_type="dataset")
    got = load_samples("org/imgfolder", n=100, seed=1)
    assert got.image_column == "image" and got.caption_column == "text"
    assert len(got.samples) == 10 and got.skipped == {"not_an_image": 1}
    assert sorted(s.caption for s in got.samples) == sorted(f"blue picture {i}.jpg" for i in range(10))
    assert sorted(s.key for s in got.samples) == sorted(f"train/{i}.jpg" for i in range(10))
    assert got.revision is not None and len(got.revision) == 40


def test_hub_column_and_split_options(hub, hub_root):
    make_repo(hub_root, "org/parquet-ds", {"data/train-00000-of-00001.parquet": parquet_dataset(4)},
              repo_type="dataset")
    with pytest.raises(UserError, match="no split 'test'"):
        open_source("org/parquet-ds", split="test")
    with pytest.raises(UserError, match="no column 'picture'"):
        open_source("org/parquet-ds", image_column="picture")
    with pytest.raises(UserError, match="not images"):
        open_source("org/parquet-ds", image_column="caption")
    with pytest.raises(UserError, match="not text"):
        open_source("org/parquet-ds", caption_column="label")


def test_hub_unknown_private_and_gated_datasets_are_user_errors(hub, hub_root, monkeypatch):
    make_repo(hub_root, "org/gated-ds", {"data/train.parquet": parquet_dataset(2)}, repo_type="dataset",
              meta={"gated": "manual"})
    make_repo(hub_root, "org/private-ds", {"data/train.parquet": parquet_dataset(2)}, repo_type="dataset",
              meta={"private": True})
    with pytest.raises(UserError, match="org/nope not found"):
        open_source("org/nope")
    with pytest.raises(UserError, match="org/private-ds not found .*private.*HF_TOKEN"):
        open_source("org/private-ds")
    with pytest.raises(UserError, match="gated.*HF_TOKEN"):
        open_source("org/gated-ds")
    # A token that was not granted access: the Hub says so when the data files are read.
    hub.gated_denied_tokens.add(READ_TOKEN)
    monkeypatch.setenv("HF_TOKEN", READ_TOKEN)
    with pytest.raises(UserError, match="gated"):
        load_samples("org/gated-ds", n=2)


def test_hub_offline_is_a_user_error(hub, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match="HF_HUB_OFFLINE"):
        open_source("org/anything")


def test_user_errors_are_one_line(tmp_path):
    with pytest.raises(UserError) as info:
        open_source(tmp_path / "missing" / "x")
    assert "\n" not in str(info.value)


def test_max_pixels_constant_is_below_pillows_limit():
    assert images.MAX_PIXELS <= Image.MAX_IMAGE_PIXELS
