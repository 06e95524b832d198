"""Every tiny pipeline family is complete: diffusers loads it as the real pipeline class (no remote
code), its tokenizers fit its text encoders, and it generates a 32x32 image."""

from __future__ import annotations

import inspect
import json
import warnings

import numpy as np
import pytest

from tests.tiny_pipelines import FAMILIES, build_pipeline

PIPELINE_CLASS = {"sd": "StableDiffusionPipeline", "sd2v": "StableDiffusionPipeline",
                  "sdxl": "StableDiffusionXLPipeline", "kolors": "KolorsPipeline",
                  "sd3": "StableDiffusion3Pipeline", "flux": "FluxPipeline",
                  "pixart": "PixArtSigmaPipeline", "sana": "SanaPipeline"}
CAPTION = "A photo of a cat sitting on a red sofa"
# Call arguments that keep a tiny run tiny where a pipeline takes them: short T5/Gemma/ChatGLM
# prompts (defaults are 256-512 tokens), no resolution binning (it maps 32 px onto 512-4096 px
# bins), no caption cleaning (needs bs4/ftfy), no Sana "complex human instruction" prefix.
SMALL_CALL = {"max_sequence_length": 16, "use_resolution_binning": False, "clean_caption": False,
              "complex_human_instruction": None}


@pytest.fixture(scope="module")
def pipelines(tmp_path_factory):
    """family -> (folder, loaded pipeline), built and loaded once per family."""
    import diffusers
    cache = {}

    def get(family):
        if family not in cache:
            folder = build_pipeline(family, tmp_path_factory.mktemp(family))
            pipe = diffusers.DiffusionPipeline.from_pretrained(folder)
            pipe.set_progress_bar_config(disable=True)
            cache[family] = folder, pipe
        return cache[family]
    return get


def test_all_families_are_built():
    assert set(FAMILIES) == set(PIPELINE_CLASS)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_loads_as_the_real_pipeline_and_generates(pipelines, family):
    import torch
    folder, pipe = pipelines(family)
    assert type(pipe).__name__ == PIPELINE_CLASS[family]
    assert not list(folder.rglob("*.py"))
    index = json.loads((folder / "model_index.json").read_text())
    for name, (library, class_name) in ((k, v) for k, v in index.items() if isinstance(v, list)):
        if class_name is not None:
            assert getattr(pipe, name) is not None, name      # every listed component was loaded
    assert type(pipe.scheduler).__name__ == index["scheduler"][1]

    params = inspect.signature(pipe.__call__).parameters
    kwargs = {k: v for k, v in SMALL_CALL.items() if k in params}
    with warnings.catch_warnings():
        # NaNs in the output would only show as numpy's cast warning when the PIL image is made
        warnings.filterwarnings("error", message="invalid value encountered", category=RuntimeWarning)
        image = pipe(CAPTION, num_inference_steps=2, height=32, width=32,
                     generator=torch.Generator().manual_seed(0), **kwargs).images[0]
    assert image.size == (32, 32) and np.asarray(image).shape == (32, 32, 3)


def test_prediction_types(pipelines):
    assert pipelines("sd")[1].scheduler.config.prediction_type == "epsilon"
    assert pipelines("sd2v")[1].scheduler.config.prediction_type == "v_prediction"


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_tokenizers_fit_their_text_encoders(pipelines, family):
    _, pipe = pipelines(family)
    pairs = [(name, "text_encoder" + name[len("tokenizer"):]) for name in pipe.components
             if name.startswith("tokenizer")]
    assert pairs
    for tok_name, enc_name in pairs:
        tokenizer, encoder = getattr(pipe, tok_name), getattr(pipe, enc_name)
        vocab_size = encoder.config.vocab_size
        ids = tokenizer(CAPTION.lower()).input_ids
        assert len(ids) > 2 and all(0 <= i < vocab_size for i in ids), (tok_name, ids)
        assert tokenizer.unk_token_id not in ids[2:-1], (tok_name, ids)     # plain words are known
        assert len(tokenizer) <= vocab_size, tok_name                         # any id it can emit fits
