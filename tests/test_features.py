"""The model-feature encoder: flattening, selection of varying keys, scaling, persisted schema."""

import json

import numpy as np

from hubselect.zoo.features import ModelFeatureEncoder, flatten_record


def _record(name, blocks, mid="UNetMidBlock2DCrossAttn", act="silu", params=1e9, flops=1e14, extra=None):
    unet = {"_class_name": "UNet2DConditionModel", "block_out_channels": blocks, "mid_block_type": mid,
            "act_fn": act, "_diffusers_version": "0.30.0", "_name_or_path": f"/home/{name}"}
    unet.update(extra or {})
    return {"model": name, "pipeline_class": "StableDiffusionPipeline", "configs": {"unet": unet},
            "sampling": {"num_inference_steps": 50}, "params_denoiser": params, "params_total": params * 1.2,
            "flops": {"per_image": flops}}


def test_flatten_indexes_lists_and_drops_provenance():
    flat = flatten_record(_record("a", [320, 640, 1280]))
    assert flat["unet_block_out_channels_2"] == 1280
    assert flat["unet_class_name"] == "UNet2DConditionModel"
    assert not any("diffusers_version" in k or "name_or_path" in k for k in flat)
    assert abs(flat["log_params_denoiser"] - 9.0) < 1e-9


def test_only_varying_keys_are_kept_and_scaled():
    recs = [_record("a", [320, 640], params=1e9), _record("b", [320, 1280], mid="UNetMidBlock2D", params=1e10),
            _record("c", [320, 640, 1280], params=1e11)]
    enc = ModelFeatureEncoder().fit(recs)
    df = enc.transform(recs)
    assert "unet_block_out_channels_0" not in df.columns            # 320 everywhere
    assert "unet_act_fn_silu" not in df.columns                     # the same everywhere
    assert "unet_block_out_channels_2" in df.columns                # present in one model only
    assert {"unet_mid_block_type_UNetMidBlock2D", "unet_mid_block_type_UNetMidBlock2DCrossAttn"} <= set(df.columns)
    col = df["log_params_denoiser"].to_numpy()
    assert np.allclose(col.mean(), 0) and np.allclose(col.std(), 1)
    one_hot = df[["unet_mid_block_type_UNetMidBlock2D", "unet_mid_block_type_UNetMidBlock2DCrossAttn"]].to_numpy()
    assert one_hot.sum(axis=1).tolist() == [1, 1, 1]
    # a model lacking a key gets the zoo mean (0) for a number
    assert df.loc[df.model == "a", "unet_block_out_channels_2"].item() == 0.0


def test_schema_persists_and_maps_a_later_model_into_the_same_space(tmp_path):
    recs = [_record("a", [320, 640]), _record("b", [320, 1280], mid="UNetMidBlock2D", params=5e9)]
    enc = ModelFeatureEncoder().fit(recs)
    path = tmp_path / "feature_schema.json"
    enc.save(path)
    assert json.loads(path.read_text())["dimension"] == len(enc.columns)
    loaded = ModelFeatureEncoder.load(path)
    later = _record("z", [320, 960, 7], mid="SomethingNew", params=2e9)
    before = enc.transform(recs)
    after = loaded.transform(recs + [later])
    assert list(after.columns) == list(before.columns)
    assert np.allclose(after.iloc[:2, 1:].to_numpy(), before.iloc[:, 1:].to_numpy())
    z = after[after.model == "z"]
    assert z[[c for c in after.columns if c.startswith("unet_mid_block_type_")]].to_numpy().sum() == 0
