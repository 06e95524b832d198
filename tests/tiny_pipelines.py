"""Tiny text-to-image pipelines for tests: real diffusers/transformers classes, scaled-down real
configs, random weights, written with save_pretrained (so the folder holds real safetensors).

Each builder returns ``{component: object}`` plus a model_index. Components are the models, the
tokenizers and the scheduler, as ``DiffusionPipeline.components`` would hold them;
:func:`write_pipeline` lays them out as a Hub repo / save_pretrained folder would, so that
``diffusers.DiffusionPipeline.from_pretrained(folder)`` loads the real pipeline class.

Tokenizers are made offline: CLIP's from the BPE merges that ship inside ``open_clip``
(truncated so that the vocabulary matches the tiny text encoder), T5's and Gemma's trained with
the ``tokenizers`` library, ChatGLM's (a sentencepiece model) trained with ``sentencepiece``, all
on English words taken from CLIP's merges. Their files are built once per process.

Sizes: hidden widths ~32, 1-2 layers, VAEs that downsample x2 (32 px images -> 16x16 latents).
"""

from __future__ import annotations

import atexit
import functools
import gzip
import json
import shutil
import tempfile
from pathlib import Path

import torch

CLIP_VOCAB = 1000                     # 256 bytes + 256 word-final bytes + 486 merges + 2 specials
CLIP_TEXT = dict(vocab_size=CLIP_VOCAB, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                 num_attention_heads=4, max_position_embeddings=77, projection_dim=32,
                 bos_token_id=CLIP_VOCAB - 2, eos_token_id=CLIP_VOCAB - 1, pad_token_id=CLIP_VOCAB - 1)
T5_TEXT = dict(vocab_size=1000, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
               relative_attention_num_buckets=8)
TINY_VAE = dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=[8, 16],
                down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
                layers_per_block=1, norm_num_groups=8, sample_size=32)
TOKENIZER_SIZES = {"t5": 500, "gemma": 600, "chatglm": 400}   # trained vocabularies (before extras)


# -- tokenizer files, built offline once per process ------------------------------------------------

@functools.cache
def _cache_dir() -> Path:
    path = Path(tempfile.mkdtemp(prefix="tiny-tokenizers-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def _byte_alphabet() -> list[str]:
    """GPT-2/CLIP byte-level BPE alphabet: byte b as one printable character, in byte order."""
    printable = set(range(ord("!"), ord("~") + 1)) | set(range(0xA1, 0xAC + 1)) | set(range(0xAE, 0xFF + 1))
    out, shift = [], 0
    for b in range(256):
        if b in printable:
            out.append(chr(b))
        else:
            out.append(chr(256 + shift))
            shift += 1
    return out


@functools.cache
def _clip_merges() -> tuple[str, ...]:
    """All BPE merges of OpenAI's CLIP tokenizer, from the copy open_clip ships."""
    import importlib.util
    spec = importlib.util.find_spec("open_clip")
    path = Path(spec.origin).parent / "bpe_simple_vocab_16e6.txt.gz"
    lines = gzip.decompress(path.read_bytes()).decode("utf-8").split("\n")
    return tuple(line for line in lines[1:] if line)   # line 0 is a version header


@functools.cache
def _corpus() -> tuple[str, ...]:
    """Short English 'sentences' of whole words from CLIP's merges (most frequent first)."""
    words = []
    for merge in _clip_merges()[:12000]:
        token = merge.replace(" ", "")
        if token.endswith("</w>") and token[:-4].isalpha():
            words.append(token[:-4])
    captions = ["A photo of a cat sitting on a red sofa.", "An oil painting of a lighthouse at dawn, 1890",
                "a small dog running on the beach!", "Portrait of a woman with blue eyes; studio light (85mm)",
                "ABCDEFGHIJKLMNOPQRSTUVWXYZ abcdefghijklmnopqrstuvwxyz 0123456789 .,;:!?'\"()-/&%+"]
    sentences = [" ".join(words[i:i + 10]) for i in range(0, len(words), 10)]
    return tuple(captions * 20 + [s.capitalize() if i % 2 else s for i, s in enumerate(sentences)])


def _tokenizer_folder(name: str, config: dict, files: dict[str, bytes | str]) -> Path:
    """Write a tokenizer folder: its files and a tokenizer_config.json."""
    folder = _cache_dir() / name
    folder.mkdir(exist_ok=True)
    for filename, content in files.items():
        data = content.encode("utf-8") if isinstance(content, str) else content
        (folder / filename).write_bytes(data)
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


@functools.cache
def clip_tokenizer_dir(pad_token: str = "<|endoftext|>") -> Path:
    """CLIPTokenizer files (vocab.json, merges.txt) with OpenAI CLIP's ids, truncated to CLIP_VOCAB.

    ``pad_token="!"`` gives the OpenCLIP variant used by SD 2.x and SDXL's/SD3's second tokenizer.
    """
    alphabet = _byte_alphabet()
    merges = _clip_merges()[:CLIP_VOCAB - 2 * len(alphabet) - 2]
    vocab = alphabet + [c + "</w>" for c in alphabet] + [m.replace(" ", "") for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    return _tokenizer_folder(
        f"clip-{'bang' if pad_token == '!' else 'eot'}",
        {"tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "do_lower_case": True,
         "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
         "pad_token": pad_token},
        {"vocab.json": json.dumps({tok: i for i, tok in enumerate(vocab)}, ensure_ascii=False),
         "merges.txt": "#version: 0.2\n" + "\n".join(merges) + "\n"})


@functools.cache
def t5_tokenizer_dir() -> Path:
    """T5-style Unigram tokenizer (<pad>=0, </s>=1, <unk>=2, "▁" word marker, 100 extra ids)."""
    from tokenizers import (Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors,
                            trainers)
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tok.train_from_iterator(_corpus(), trainers.UnigramTrainer(
        vocab_size=TOKENIZER_SIZES["t5"], special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>",
        show_progress=False))
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                       special_tokens=[("</s>", 1)])
    return _tokenizer_folder(
        "t5", {"tokenizer_class": "T5Tokenizer", "model_max_length": 512, "extra_ids": 100,
               "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"},
        {"tokenizer.json": tok.to_str()})


@functools.cache
def gemma_tokenizer_dir() -> Path:
    """Gemma-style byte-fallback BPE (<pad>=0, <eos>=1, <bos>=2, <unk>=3, <mask>=4, then 256 bytes)."""
    from tokenizers import (Tokenizer, decoders, models, normalizers, pre_tokenizers, processors,
                            trainers)
    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]
    trainee = Tokenizer(models.BPE(unk_token="<unk>"))
    trainee.normalizer = normalizers.Replace(" ", "▁")
    trainee.pre_tokenizer = pre_tokenizers.Split("▁", behavior="merged_with_next")  # no merge spans words
    n_learned = TOKENIZER_SIZES["gemma"] - len(specials) - 256
    trainee.train_from_iterator(_corpus(), trainers.BpeTrainer(
        vocab_size=n_learned + len(specials), special_tokens=specials, show_progress=False))
    learned = json.loads(trainee.to_str())["model"]
    vocab = specials + [f"<0x{b:02X}>" for b in range(256)]
    vocab += [t for t, _ in sorted(learned["vocab"].items(), key=lambda kv: kv[1]) if t not in specials]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in learned["merges"]]
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(vocab)}, merges=merges, unk_token="<unk>",
                               byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Replace(" ", "▁")
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    tok.add_special_tokens(specials)
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", pair="<bos> $A <bos> $B",
                                                       special_tokens=[("<bos>", 2)])
    return _tokenizer_folder(
        "gemma", {"tokenizer_class": "GemmaTokenizer", "model_max_length": 8192, "add_bos_token": True,
                  "add_eos_token": False, "padding_side": "right", "pad_token": "<pad>", "eos_token": "<eos>",
                  "bos_token": "<bos>", "unk_token": "<unk>", "mask_token": "<mask>"},
        {"tokenizer.json": tok.to_str()})


@functools.cache
def chatglm_tokenizer_dir() -> Path:
    """ChatGLM3-style sentencepiece BPE model (<unk>=0, <s>=1, </s>=2) for diffusers' ChatGLMTokenizer."""
    import io

    import sentencepiece as spm
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_corpus()), model_writer=model, vocab_size=TOKENIZER_SIZES["chatglm"],
        model_type="bpe", unk_id=0, bos_id=1, eos_id=2, pad_id=-1, character_coverage=1.0,
        num_threads=1, minloglevel=2)
    return _tokenizer_folder(
        "chatglm", {"tokenizer_class": "ChatGLMTokenizer", "padding_side": "left",
                    "clean_up_tokenization_spaces": False, "model_max_length": 1024},
        {"tokenizer.model": model.getvalue()})


def clip_tokenizer(pad_token: str = "<|endoftext|>"):
    from transformers import CLIPTokenizer
    return CLIPTokenizer.from_pretrained(clip_tokenizer_dir(pad_token))


def t5_tokenizer():
    from transformers import T5TokenizerFast
    return T5TokenizerFast.from_pretrained(t5_tokenizer_dir())


def gemma_tokenizer():
    from transformers import GemmaTokenizerFast
    return GemmaTokenizerFast.from_pretrained(gemma_tokenizer_dir())


def chatglm_tokenizer():
    from diffusers.pipelines.kolors import ChatGLMTokenizer
    return ChatGLMTokenizer.from_pretrained(chatglm_tokenizer_dir())


# -- models -----------------------------------------------------------------------------------------

def _clip(with_projection: bool = False, **overrides):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection
    cls = CLIPTextModelWithProjection if with_projection else CLIPTextModel
    return cls(CLIPTextConfig(**{**CLIP_TEXT, **overrides}))


def _t5(**overrides):
    from transformers import T5Config, T5EncoderModel
    return T5EncoderModel(T5Config(**{**T5_TEXT, **overrides}))


def _vae(latent_channels: int = 4, **overrides):
    from diffusers import AutoencoderKL
    return AutoencoderKL(**{**TINY_VAE, "latent_channels": latent_channels, **overrides})


def _scheduler(class_name: str, **config):
    import diffusers
    return getattr(diffusers, class_name)(**config)


# SD 1.x/2.x scaled-linear schedule (runwayml/stable-diffusion-v1-5, stabilityai/stable-diffusion-2-1).
_SD_BETAS = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
             "num_train_timesteps": 1000, "steps_offset": 1}


def _sd_index(unet_cls: str = "UNet2DConditionModel", scheduler: str = "PNDMScheduler") -> dict:
    return {"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", unet_cls],
            "vae": ["diffusers", "AutoencoderKL"], "text_encoder": ["transformers", "CLIPTextModel"],
            "tokenizer": ["transformers", "CLIPTokenizer"], "scheduler": ["diffusers", scheduler],
            "safety_checker": [None, None], "feature_extractor": [None, None],
            "requires_safety_checker": False}


def sd_unet_pipeline() -> tuple[dict, dict]:
    """SD 1.5 (stable-diffusion-v1-5): one CLIP-L encoder, cross-attention UNet, KL VAE, PNDM (epsilon)."""
    from diffusers import UNet2DConditionModel
    unet = UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(16, 32),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=8, norm_num_groups=8)
    comps = {"unet": unet, "vae": _vae(scaling_factor=0.18215), "text_encoder": _clip(),
             "tokenizer": clip_tokenizer(),
             "scheduler": _scheduler("PNDMScheduler", **_SD_BETAS, skip_prk_steps=True, set_alpha_to_one=False,
                                      prediction_type="epsilon")}
    return comps, _sd_index()


def sd2v_unet_pipeline() -> tuple[dict, dict]:
    """SD 2.1 (stabilityai/stable-diffusion-2-1): OpenCLIP-H text encoder (gelu, "!" padding),
    per-block head counts with linear projections, DDIM with v-prediction."""
    from diffusers import UNet2DConditionModel
    unet = UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(16, 32),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=[2, 4], use_linear_projection=True, norm_num_groups=8)
    comps = {"unet": unet, "vae": _vae(scaling_factor=0.18215), "text_encoder": _clip(hidden_act="gelu"),
             "tokenizer": clip_tokenizer("!"),
             "scheduler": _scheduler("DDIMScheduler", **_SD_BETAS, clip_sample=False, set_alpha_to_one=False,
                                      prediction_type="v_prediction")}
    return comps, _sd_index(scheduler="DDIMScheduler")


def sdxl_unet_pipeline() -> tuple[dict, dict]:
    """SDXL (stable-diffusion-xl-base-1.0): CLIP-L + OpenCLIP-bigG (with projection), UNet with
    added time ids (text_time conditioning), Euler."""
    from diffusers import UNet2DConditionModel
    unet = UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(16, 32),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=64, attention_head_dim=(2, 4), transformer_layers_per_block=(1, 2),
        addition_embed_type="text_time", addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=6 * 8 + 32, use_linear_projection=True, norm_num_groups=8)
    comps = {"unet": unet, "vae": _vae(scaling_factor=0.13025), "text_encoder": _clip(),
             "text_encoder_2": _clip(with_projection=True, hidden_act="gelu"),
             "tokenizer": clip_tokenizer(), "tokenizer_2": clip_tokenizer("!"),
             "scheduler": _scheduler("EulerDiscreteScheduler", **_SD_BETAS, prediction_type="epsilon",
                                     timestep_spacing="leading", interpolation_type="linear")}
    index = {"_class_name": "StableDiffusionXLPipeline", "unet": ["diffusers", "UNet2DConditionModel"],
             "vae": ["diffusers", "AutoencoderKL"], "text_encoder": ["transformers", "CLIPTextModel"],
             "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
             "tokenizer": ["transformers", "CLIPTokenizer"], "tokenizer_2": ["transformers", "CLIPTokenizer"],
             "scheduler": ["diffusers", "EulerDiscreteScheduler"], "force_zeros_for_empty_prompt": True}
    return comps, index


def _chatglm():
    """ChatGLM3-6B-base text encoder (Kwai-Kolors/Kolors text_encoder/config.json), scaled down."""
    from diffusers.pipelines.kolors import ChatGLMModel
    from diffusers.pipelines.kolors.text_encoder import ChatGLMConfig
    config = ChatGLMConfig(
        num_layers=2, padded_vocab_size=1000, hidden_size=32, ffn_hidden_size=37, kv_channels=8,
        num_attention_heads=4, seq_length=1024, multi_query_attention=True, multi_query_group_num=2,
        add_qkv_bias=True, add_bias_linear=False, rmsnorm=True, post_layer_norm=True,
        original_rope=True,            # read by ChatGLMModel but not a ChatGLMConfig default
        eos_token_id=2, pad_token_id=0, use_cache=False)
    model = ChatGLMModel(config, empty_init=False)   # the default empty_init skips initialisation
    with torch.no_grad():   # its RMSNorm weights come from torch.empty and _init_weights is a no-op
        for name, param in model.named_parameters():
            if name.endswith("layernorm.weight"):
                param.fill_(1.0)
    return model


def kolors_pipeline() -> tuple[dict, dict]:
    """Kolors (Kwai-Kolors/Kolors-diffusers): ChatGLM3 text encoder, SDXL-like UNet whose prompt
    embedding goes through a text_proj (encoder_hid_dim) and whose text_time embedding takes
    ChatGLM's pooled state, Euler with Kolors' 1100-step schedule."""
    from diffusers import UNet2DConditionModel
    glm = _chatglm()
    hidden = glm.config.hidden_size
    unet = UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(16, 32),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=64, attention_head_dim=(2, 4), transformer_layers_per_block=(1, 2),
        encoder_hid_dim=hidden, encoder_hid_dim_type="text_proj",
        addition_embed_type="text_time", addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=6 * 8 + hidden, use_linear_projection=True, norm_num_groups=8)
    comps = {"unet": unet, "vae": _vae(scaling_factor=0.13025), "text_encoder": glm,
             "tokenizer": chatglm_tokenizer(),
             "scheduler": _scheduler("EulerDiscreteScheduler", **{**_SD_BETAS, "beta_end": 0.014,
                                                                  "num_train_timesteps": 1100},
                                     prediction_type="epsilon", timestep_spacing="leading")}
    index = {"_class_name": "KolorsPipeline", "unet": ["diffusers", "UNet2DConditionModel"],
             "vae": ["diffusers", "AutoencoderKL"], "text_encoder": ["kolors", "ChatGLMModel"],
             "tokenizer": ["kolors", "ChatGLMTokenizer"], "scheduler": ["diffusers", "EulerDiscreteScheduler"],
             "image_encoder": [None, None], "feature_extractor": [None, None],
             "force_zeros_for_empty_prompt": False}
    return comps, index


def sd3_pipeline() -> tuple[dict, dict]:
    """SD3 (stable-diffusion-3-medium): MMDiT (persistent pos-embed buffer), CLIP-L + CLIP-G + T5,
    16-channel VAE, flow matching. The T5 width equals the concatenated CLIP widths, as 4096 > 2048
    does in the real model, so the CLIP embedding is zero-padded rather than cut."""
    from diffusers import SD3Transformer2DModel
    transformer = SD3Transformer2DModel(
        sample_size=16, patch_size=2, in_channels=16, out_channels=16, num_layers=2, attention_head_dim=8,
        num_attention_heads=2, joint_attention_dim=64, caption_projection_dim=16, pooled_projection_dim=64,
        pos_embed_max_size=24)
    comps = {"transformer": transformer,
             "vae": _vae(16, scaling_factor=1.5305, shift_factor=0.0609, use_quant_conv=False,
                         use_post_quant_conv=False),
             "text_encoder": _clip(with_projection=True),
             "text_encoder_2": _clip(with_projection=True, hidden_act="gelu"),
             "text_encoder_3": _t5(d_model=64),
             "tokenizer": clip_tokenizer(), "tokenizer_2": clip_tokenizer("!"), "tokenizer_3": t5_tokenizer(),
             "scheduler": _scheduler("FlowMatchEulerDiscreteScheduler", num_train_timesteps=1000, shift=3.0)}
    index = {"_class_name": "StableDiffusion3Pipeline",
             "transformer": ["diffusers", "SD3Transformer2DModel"], "vae": ["diffusers", "AutoencoderKL"],
             "text_encoder": ["transformers", "CLIPTextModelWithProjection"],
             "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
             "text_encoder_3": ["transformers", "T5EncoderModel"],
             "tokenizer": ["transformers", "CLIPTokenizer"], "tokenizer_2": ["transformers", "CLIPTokenizer"],
             "tokenizer_3": ["transformers", "T5TokenizerFast"],
             "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"]}
    return comps, index


def flux_pipeline() -> tuple[dict, dict]:
    """FLUX.1-dev: packed-token transformer (2x2 patches of the 16-channel latent -> 64 channels)
    with guidance embedding, CLIP-L (pooled) + T5, dynamically shifted flow matching."""
    from diffusers import FluxTransformer2DModel
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=64, num_layers=1, num_single_layers=1, attention_head_dim=8,
        num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, guidance_embeds=True,
        axes_dims_rope=(2, 2, 4))
    comps = {"transformer": transformer,
             "vae": _vae(16, scaling_factor=0.3611, shift_factor=0.1159, use_quant_conv=False,
                         use_post_quant_conv=False),
             "text_encoder": _clip(), "text_encoder_2": _t5(),
             "tokenizer": clip_tokenizer(), "tokenizer_2": t5_tokenizer(),
             "scheduler": _scheduler("FlowMatchEulerDiscreteScheduler", num_train_timesteps=1000, shift=3.0,
                                     use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                     base_image_seq_len=256, max_image_seq_len=4096)}
    index = {"_class_name": "FluxPipeline", "transformer": ["diffusers", "FluxTransformer2DModel"],
             "vae": ["diffusers", "AutoencoderKL"], "text_encoder": ["transformers", "CLIPTextModel"],
             "text_encoder_2": ["transformers", "T5EncoderModel"],
             "tokenizer": ["transformers", "CLIPTokenizer"], "tokenizer_2": ["transformers", "T5TokenizerFast"],
             "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"]}
    return comps, index


def pixart_pipeline() -> tuple[dict, dict]:
    """PixArt-Σ (PixArt-Sigma-XL-2-512-MS transformer, -1024-MS pipeline): DiT with adaLN-single and
    learned sigma (out_channels = 2 x latent), T5 captions, SDXL's KL VAE, DPM-Solver++ (epsilon)."""
    from diffusers import PixArtTransformer2DModel
    transformer = PixArtTransformer2DModel(
        sample_size=16, patch_size=2, in_channels=4, out_channels=8, num_layers=2, attention_head_dim=8,
        num_attention_heads=4, cross_attention_dim=32, caption_channels=T5_TEXT["d_model"],
        norm_type="ada_norm_single", norm_elementwise_affine=False, norm_eps=1e-6, attention_bias=True,
        activation_fn="gelu-approximate", num_embeds_ada_norm=1000, interpolation_scale=1)
    comps = {"transformer": transformer, "vae": _vae(scaling_factor=0.13025), "text_encoder": _t5(),
             "tokenizer": t5_tokenizer(),
             "scheduler": _scheduler("DPMSolverMultistepScheduler", num_train_timesteps=1000, beta_start=0.0001,
                                     beta_end=0.02, beta_schedule="linear", prediction_type="epsilon",
                                     algorithm_type="dpmsolver++", solver_order=2, solver_type="midpoint",
                                     lower_order_final=True, timestep_spacing="linspace", steps_offset=0)}
    index = {"_class_name": "PixArtSigmaPipeline", "transformer": ["diffusers", "PixArtTransformer2DModel"],
             "vae": ["diffusers", "AutoencoderKL"], "text_encoder": ["transformers", "T5EncoderModel"],
             "tokenizer": ["transformers", "T5Tokenizer"],
             "scheduler": ["diffusers", "DPMSolverMultistepScheduler"]}
    return comps, index


def _gemma2():
    """Gemma-2-2B-it text encoder (as Sana uses it), scaled down: GQA, soft-capping, sliding window."""
    from transformers import Gemma2Config, Gemma2Model
    return Gemma2Model(Gemma2Config(
        vocab_size=1000, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=8, query_pre_attn_scalar=8, sliding_window=64,
        max_position_embeddings=8192, attn_logit_softcapping=50.0, final_logit_softcapping=30.0))


def _dc_ae():
    """DC-AE (mit-han-lab/dc-ae-f32c32-sana-1.0: ResBlock stages then EfficientViT stages,
    pixel-unshuffle shortcuts, 32 latent channels at x32), scaled down to two stages: x2, 16 channels."""
    from diffusers import AutoencoderDC
    return AutoencoderDC(
        in_channels=3, latent_channels=16, attention_head_dim=8,
        encoder_block_types=("ResBlock", "EfficientViTBlock"), decoder_block_types=("ResBlock", "EfficientViTBlock"),
        encoder_block_out_channels=(8, 16), decoder_block_out_channels=(8, 16),
        encoder_layers_per_block=(1, 1), decoder_layers_per_block=(1, 1),
        encoder_qkv_multiscales=((), (5,)), decoder_qkv_multiscales=((), (5,)),
        upsample_block_type="interpolate", downsample_block_type="Conv",
        decoder_norm_types=("batch_norm", "rms_norm"), decoder_act_fns=("relu", "silu"),
        scaling_factor=0.41407)


def sana_pipeline() -> tuple[dict, dict]:
    """Sana (Efficient-Large-Model/Sana_1600M_1024px_diffusers): linear-attention DiT, Gemma-2
    captions, DC-AE, DPM-Solver++ with flow sigmas (flow_prediction, flow_shift 3)."""
    from diffusers import SanaTransformer2DModel
    transformer = SanaTransformer2DModel(
        in_channels=16, out_channels=16, num_attention_heads=4, attention_head_dim=8, num_layers=2,
        num_cross_attention_heads=2, cross_attention_head_dim=16, cross_attention_dim=32, caption_channels=32,
        mlp_ratio=2.5, sample_size=16, patch_size=1, norm_elementwise_affine=False, norm_eps=1e-6)
    comps = {"transformer": transformer, "vae": _dc_ae(), "text_encoder": _gemma2(),
             "tokenizer": gemma_tokenizer(),
             "scheduler": _scheduler("DPMSolverMultistepScheduler", num_train_timesteps=1000, beta_start=0.0001,
                                     beta_end=0.02, beta_schedule="linear", prediction_type="flow_prediction",
                                     use_flow_sigmas=True, flow_shift=3.0, algorithm_type="dpmsolver++",
                                     solver_order=2, solver_type="midpoint", lower_order_final=True,
                                     final_sigmas_type="zero", timestep_spacing="linspace", steps_offset=0)}
    index = {"_class_name": "SanaPipeline", "transformer": ["diffusers", "SanaTransformer2DModel"],
             "vae": ["diffusers", "AutoencoderDC"], "text_encoder": ["transformers", "Gemma2Model"],
             "tokenizer": ["transformers", "GemmaTokenizerFast"],
             "scheduler": ["diffusers", "DPMSolverMultistepScheduler"]}
    return comps, index


FAMILIES = {"sd": sd_unet_pipeline, "sd2v": sd2v_unet_pipeline, "sdxl": sdxl_unet_pipeline,
            "kolors": kolors_pipeline, "sd3": sd3_pipeline, "flux": flux_pipeline,
            "pixart": pixart_pipeline, "sana": sana_pipeline}


def write_pipeline(folder: Path, comps: dict, index: dict, card: str | None = None,
                   scheduler_config: dict | None = None) -> Path:
    """Save components with save_pretrained (safetensors) and write model_index.json.

    The scheduler is written from ``scheduler_config`` when given, else by the scheduler among
    ``comps``, else as a minimal config of the class model_index names.
    """
    torch.manual_seed(0)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, component in comps.items():
        if name == "scheduler" and scheduler_config is not None:
            continue
        component.save_pretrained(folder / name)
    (folder / "model_index.json").write_text(json.dumps(index, indent=2))
    if scheduler_config is not None or "scheduler" not in comps:
        sched = scheduler_config or {"_class_name": index.get("scheduler", [None, "DDIMScheduler"])[1],
                                     "num_train_timesteps": 1000}
        (folder / "scheduler").mkdir(exist_ok=True)
        (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(sched))
    if card is not None:
        (folder / "README.md").write_text(card)
    return folder


def build_pipeline(family: str, folder: Path) -> Path:
    """Write the complete tiny pipeline of ``family`` (a FAMILIES key) into ``folder``."""
    comps, index = FAMILIES[family]()
    return write_pipeline(folder, comps, index)


def checkpoint_numel(folder: Path) -> int:
    """Elements stored in a component folder's safetensors files (what the Hub would hold)."""
    from safetensors import safe_open
    total = 0
    for f in sorted(Path(folder).glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as st:
            for key in st.keys():
                total += st.get_slice(key).get_shape().numel() if hasattr(st.get_slice(key).get_shape(), "numel") \
                    else int(torch.Size(st.get_slice(key).get_shape()).numel())
    return total
