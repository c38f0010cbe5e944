"""The registered models: the official RVRT and VRT tasks, the MindSpore (mindediting) RVRT and
RVRT Light weights, and rvrt's own small model. One record per model (see :mod:`rvrt.zoo`)."""

from __future__ import annotations

from rvrt.zoo.spec import Metric, ModelSpec, WeightsSpec, register

# --------------------------------------------------------------------------- RVRT (official)
_RVRT_RELEASE = "https://github.com/JingyunLiang/RVRT/releases/download/v0.0/"
_RVRT_SOURCE = "JingyunLiang/RVRT release v0.0 (Liang et al., NeurIPS 2022)"

_RVRT_SR = dict(
    upscale=4,
    clip_size=2,
    img_size=[2, 64, 64],
    window_size=[2, 8, 8],
    num_blocks=[1, 2, 1],
    depths=[2, 2, 2],
    embed_dims=[144, 144, 144],
    num_heads=[6, 6, 6],
    inputconv_groups=[1, 1, 1, 1, 1, 1],
    deformable_groups=12,
    attention_heads=12,
    attention_window=[3, 3],
    cpu_cache_length=100,
)
_RVRT_DEBLUR = dict(_RVRT_SR, upscale=1, embed_dims=[192, 192, 192], inputconv_groups=[1, 3, 3, 3, 3, 3])
_RVRT_DENOISE = dict(_RVRT_DEBLUR, inputconv_groups=[1, 3, 4, 6, 8, 4], nonblind_denoising=True)


#: parameters of each registered network (tests/test_weights.py counts them on the built models)
_PARAMS = {
    "rvrt.sr_bi_reds": 10_782_295,
    "rvrt.sr_bi_vimeo": 10_782_295,
    "rvrt.sr_bd_vimeo": 10_782_295,
    "rvrt.deblur_dvd": 13_573_159,
    "rvrt.deblur_gopro": 13_573_159,
    "rvrt.denoise_davis": 12_786_919,
    "vrt.sr_bi_reds_6f": 30_676_435,
    "vrt.sr_bi_reds_16f": 35_134_783,
    "vrt.sr_bi_vimeo": 32_577_991,
    "vrt.sr_bd_vimeo": 32_577_991,
    "vrt.deblur_dvd": 18_320_007,
    "vrt.deblur_gopro": 18_320_007,
    "vrt.deblur_reds": 18_320_007,
    "vrt.denoise_davis": 18_320_871,
    "vrt.vfi_vimeo": 9_943_387,
    "rvrt_light.sr_bi_vimeo": 8_456_755,
    "rvrt.sr_bi_vimeo_mindspore": 10_782_295,
    "rvrt.sr_small": 2_862_839,
    "rvrt.sr_small_v2": 2_862_839,
}


def _rvrt(name, task_name, kwargs, task, scale, description, metrics, tile, overlap, frames):
    return register(
        ModelSpec(
            name=name,
            aliases=(task_name,),
            arch="rvrt",
            kwargs=kwargs,
            task=task,
            scale=scale,
            description=description,
            weights=WeightsSpec(url=f"{_RVRT_RELEASE}{task_name}.pth", source=_RVRT_SOURCE),
            metrics=metrics,
            tile=tile,
            tile_overlap=overlap,
            train_frames=frames,
            params=_PARAMS[name],
        )
    )


_rvrt(
    "rvrt.sr_bi_reds",
    "001_RVRT_videosr_bi_REDS_30frames",
    _RVRT_SR,
    "sr",
    4,
    "x4 video super-resolution, bicubic (BI) degradation, trained on REDS",
    (Metric("REDS4", "RGB", 32.75, 0.9113),),
    (100, 128, 128),
    (2, 20, 20),
    30,
)
_rvrt(
    "rvrt.sr_bi_vimeo",
    "002_RVRT_videosr_bi_Vimeo_14frames",
    _RVRT_SR,
    "sr",
    4,
    "x4 video super-resolution, bicubic (BI) degradation, trained on Vimeo-90K",
    (Metric("Vimeo-90K-T", "Y", 38.15, 0.9527), Metric("Vid4", "Y", 27.99, 0.8462)),
    (0, 0, 0),
    (2, 20, 20),
    14,
)
_rvrt(
    "rvrt.sr_bd_vimeo",
    "003_RVRT_videosr_bd_Vimeo_14frames",
    _RVRT_SR,
    "sr",
    4,
    "x4 video super-resolution, blur-downsampling (BD) degradation, trained on Vimeo-90K",
    (
        Metric("UDM10", "Y", 40.90, 0.9729),
        Metric("Vimeo-90K-T", "Y", 38.59, 0.9576),
        Metric("Vid4", "Y", 29.54, 0.8810),
    ),
    (0, 0, 0),
    (2, 20, 20),
    14,
)
_rvrt(
    "rvrt.deblur_dvd",
    "004_RVRT_videodeblurring_DVD_16frames",
    _RVRT_DEBLUR,
    "deblur",
    1,
    "video deblurring, trained on DVD",
    (Metric("DVD", "RGB", 34.30, 0.9655),),
    (0, 256, 256),
    (2, 20, 20),
    16,
)
_rvrt(
    "rvrt.deblur_gopro",
    "005_RVRT_videodeblurring_GoPro_16frames",
    _RVRT_DEBLUR,
    "deblur",
    1,
    "video deblurring, trained on GoPro",
    (Metric("GoPro", "RGB", 34.92, 0.9738),),
    (0, 256, 256),
    (2, 20, 20),
    16,
)
_rvrt(
    "rvrt.denoise_davis",
    "006_RVRT_videodenoising_DAVIS_16frames",
    _RVRT_DENOISE,
    "denoise",
    1,
    "non-blind video denoising (sigma 0-50), trained on DAVIS",
    tuple(
        Metric("DAVIS", "RGB", p, None, f"sigma={s}")
        for s, p in ((10, 40.57), (20, 38.05), (30, 36.57), (40, 35.47), (50, 34.57))
    )
    + tuple(
        Metric("Set8", "RGB", p, None, f"sigma={s}")
        for s, p in ((10, 37.53), (20, 34.83), (30, 33.30), (40, 32.21), (50, 31.33))
    ),
    (0, 256, 256),
    (2, 20, 20),
    16,
)


# --------------------------------------------------------------------------- VRT (official)
_VRT_RELEASE = "https://github.com/JingyunLiang/VRT/releases/download/v0.0/"
_VRT_SOURCE = "JingyunLiang/VRT release v0.0 (Liang et al., arXiv:2201.12288)"

# the constructor arguments of main_test_vrt.py, per task
_VRT_SR = dict(
    upscale=4,
    depths=[8, 8, 8, 8, 8, 8, 8, 4, 4, 4, 4, 4, 4],
    indep_reconsts=[11, 12],
    embed_dims=[120, 120, 120, 120, 120, 120, 120, 180, 180, 180, 180, 180, 180],
    num_heads=[6] * 13,
)
_VRT_SR_6F = dict(_VRT_SR, img_size=[6, 64, 64], window_size=[6, 8, 8], pa_frames=2, deformable_groups=12)
_VRT_SR_16F = dict(_VRT_SR, img_size=[16, 64, 64], window_size=[8, 8, 8], pa_frames=6, deformable_groups=24)
_VRT_SR_VIMEO = dict(_VRT_SR, img_size=[8, 64, 64], window_size=[8, 8, 8], pa_frames=4, deformable_groups=16)
_VRT_DEBLUR = dict(
    upscale=1,
    img_size=[6, 192, 192],
    window_size=[6, 8, 8],
    depths=[8, 8, 8, 8, 8, 8, 8, 4, 4, 4, 4],
    indep_reconsts=[9, 10],
    embed_dims=[96, 96, 96, 96, 96, 96, 96, 120, 120, 120, 120],
    num_heads=[6] * 11,
    pa_frames=2,
    deformable_groups=16,
)
_VRT_DENOISE = dict(_VRT_DEBLUR, nonblind_denoising=True)
_VRT_VFI = dict(
    upscale=1,
    out_chans=3,
    img_size=[4, 192, 192],
    window_size=[4, 8, 8],
    depths=[8, 8, 8, 8, 8, 8, 8, 4, 4, 4, 4],
    indep_reconsts=[],
    embed_dims=[96, 96, 96, 96, 96, 96, 96, 120, 120, 120, 120],
    num_heads=[6] * 11,
    pa_frames=0,
)


def _vrt(name, task_name, kwargs, task, scale, description, metrics, tile, overlap, frames, **extras):
    return register(
        ModelSpec(
            name=name,
            aliases=(task_name,),
            arch="vrt",
            kwargs=kwargs,
            task=task,
            scale=scale,
            description=description,
            metrics=metrics,
            tile=tile,
            tile_overlap=overlap,
            train_frames=frames,
            params=_PARAMS[name],
            weights=WeightsSpec(url=f"{_VRT_RELEASE}{task_name}.pth", source=_VRT_SOURCE),
            extras=extras,
        )
    )


# metrics: the VRT paper's tables 1-6 (PSNR in dB / SSIM); tiles: the README's test commands
# the README tests Vimeo-90K-T (14 mirrored frames) in 8-frame clips of whole frames
_VRT_VIMEO_TILES = {"vimeo": ((8, 0, 0), (0, 20, 20))}
_vrt(
    "vrt.sr_bi_reds_6f",
    "001_VRT_videosr_bi_REDS_6frames",
    _VRT_SR_6F,
    "sr",
    4,
    "x4 video super-resolution, bicubic (BI) degradation, trained on REDS with 6-frame clips",
    (Metric("REDS4", "RGB", 31.60, 0.8888),),
    (40, 128, 128),
    (2, 20, 20),
    6,
)
_vrt(
    "vrt.sr_bi_reds_16f",
    "002_VRT_videosr_bi_REDS_16frames",
    _VRT_SR_16F,
    "sr",
    4,
    "x4 video super-resolution, bicubic (BI) degradation, trained on REDS with 16-frame clips",
    (Metric("REDS4", "RGB", 32.19, 0.9006),),
    (40, 128, 128),
    (2, 20, 20),
    16,
)
_vrt(
    "vrt.sr_bi_vimeo",
    "003_VRT_videosr_bi_Vimeo_7frames",
    _VRT_SR_VIMEO,
    "sr",
    4,
    "x4 video super-resolution, bicubic (BI) degradation, trained on Vimeo-90K",
    (Metric("Vimeo-90K-T", "Y", 38.20, 0.9530), Metric("Vid4", "Y", 27.93, 0.8425)),
    (32, 128, 128),
    (2, 20, 20),
    7,
    protocol_tiles=_VRT_VIMEO_TILES,
)
_vrt(
    "vrt.sr_bd_vimeo",
    "004_VRT_videosr_bd_Vimeo_7frames",
    _VRT_SR_VIMEO,
    "sr",
    4,
    "x4 video super-resolution, blur-downsampling (BD) degradation, trained on Vimeo-90K",
    (
        Metric("UDM10", "Y", 41.05, 0.9737),
        Metric("Vimeo-90K-T", "Y", 38.72, 0.9584),
        Metric("Vid4", "Y", 29.42, 0.8795),
    ),
    (32, 128, 128),
    (2, 20, 20),
    7,
    protocol_tiles=_VRT_VIMEO_TILES,
)
_vrt(
    "vrt.deblur_dvd",
    "005_VRT_videodeblurring_DVD",
    _VRT_DEBLUR,
    "deblur",
    1,
    "video deblurring, trained on DVD",
    (Metric("DVD", "RGB", 34.27, 0.9651),),
    (12, 256, 256),
    (2, 20, 20),
    6,
)
_vrt(
    "vrt.deblur_gopro",
    "006_VRT_videodeblurring_GoPro",
    _VRT_DEBLUR,
    "deblur",
    1,
    "video deblurring, trained on GoPro",
    (Metric("GoPro", "RGB", 34.81, 0.9724),),
    (18, 192, 192),
    (2, 20, 20),
    6,
)
_vrt(
    "vrt.deblur_reds",
    "007_VRT_videodeblurring_REDS",
    _VRT_DEBLUR,
    "deblur",
    1,
    "video deblurring, trained on REDS",
    (Metric("REDS4", "RGB", 36.79, 0.9648),),
    (12, 256, 256),
    (2, 20, 20),
    6,
)
_vrt(
    "vrt.denoise_davis",
    "008_VRT_videodenoising_DAVIS",
    _VRT_DENOISE,
    "denoise",
    1,
    "non-blind video denoising (sigma 0-50), trained on DAVIS",
    tuple(
        Metric("DAVIS", "RGB", p, None, f"sigma={s}")
        for s, p in ((10, 40.82), (20, 38.15), (30, 36.52), (40, 35.32), (50, 34.36))
    )
    + tuple(
        Metric("Set8", "RGB", p, None, f"sigma={s}")
        for s, p in ((10, 37.88), (20, 35.02), (30, 33.35), (40, 32.15), (50, 31.22))
    ),
    (12, 256, 256),
    (2, 20, 20),
    6,
)
# input frames s, s+2, s+4, s+6 of a video -> frame s+3 (see rvrt.models.vrt)
_vrt(
    "vrt.vfi_vimeo",
    "009_VRT_videofi_Vimeo_4frames",
    _VRT_VFI,
    "vfi",
    1,
    "video frame interpolation (x2, one frame from four), trained on Vimeo-90K",
    (
        Metric("Vimeo-90K-T", "RGB", 36.53, 0.977),
        Metric("UCF101", "RGB", 33.30, 0.970),
        Metric("DAVIS", "RGB", 27.88, 0.889),
    ),
    (0, 0, 0),
    (0, 20, 20),
    4,
    input_offsets=(0, 2, 4, 6),
    output_offset=3,
    # whole frames for Vimeo-90K/UCF101, 256-pixel tiles overlapping by 20 for DAVIS; measured on CPU
    # (fp32, inference): about 28 KB per input pixel and frame of the 4-frame window
    bytes_per_pixel_frame=28672,
)


# --------------------------------------------------------------------------- MindSpore (mindediting)
# mindediting's README links the folder; the file names are those of its configs' ``load_path``
# (``/data/LLVT/RVRT/ckpt/trained/<file>`` mirrors ``LLVT_opensource/RVRT/ckpt/trained/``).
_MINDEDITING_RELEASE = "https://download.mindspore.cn/toolkits/mindediting/LLVT_opensource/RVRT/ckpt/trained/"
_MINDEDITING_SOURCE = (
    "mindspore-lab/mindediting (configs/rvrt_light, configs/rvrt, docs/rvrt.md); the licence is "
    "that of the repository, no separate weights licence is stated"
)
_MINDEDITING_LICENSE = "Apache-2.0 (mindediting)"
# Vimeo-90K-T as mindediting evaluates it: 7 frames mirrored to 14, PSNR on Y of the centre frame
# (mean of its two mirrored outputs), no border crop
_MINDEDITING_VIMEO = "Y of the centre frame (mean of its two outputs), 7 frames mirrored to 14, no crop"

_RVRT_LIGHT_SR = dict(
    upscale=4,
    clip_size=2,
    img_size=[14, 64, 64],
    window_size=[2, 8, 8],
    num_blocks=[1, 2, 1],
    depths=[2, 2, 2],
    embed_dims=[144, 144, 144],
    num_heads=[6, 6, 6],
    mlp_ratio=2,
    inputconv_groups=[1, 1, 1, 1, 1, 1],
    max_residue_magnitude=10,
    attention_heads=12,
    attention_window=[3, 3],
    to_float16=False,
    relative_position_encoding=False,
)

register(
    ModelSpec(
        name="rvrt_light.sr_bi_vimeo",
        params=_PARAMS["rvrt_light.sr_bi_vimeo"],
        arch="rvrt_light",
        kwargs=_RVRT_LIGHT_SR,
        task="sr",
        scale=4,
        description="RVRT Light (no optical flow, window-attention alignment): x4 video SR, bicubic (BI), Vimeo-90K",
        weights=WeightsSpec(
            url=f"{_MINDEDITING_RELEASE}rvrt_light_37.91.ckpt", license=_MINDEDITING_LICENSE, source=_MINDEDITING_SOURCE
        ),
        metrics=(Metric("Vimeo-90K-T", "Y", 37.91, None, _MINDEDITING_VIMEO),),
        tile=(0, 0, 0),
        tile_overlap=(2, 20, 20),
        train_frames=14,
    )
)

register(
    ModelSpec(
        name="rvrt.sr_bi_vimeo_mindspore",
        params=_PARAMS["rvrt.sr_bi_vimeo_mindspore"],
        arch="rvrt",
        kwargs=dict(_RVRT_SR, img_size=[14, 64, 64], mindspore_compat=True),
        task="sr",
        scale=4,
        description="mindediting's MindSpore RVRT (tanh GELU, LayerNorm eps 1e-7): "
        "x4 video SR, bicubic (BI), Vimeo-90K",
        weights=WeightsSpec(
            url=f"{_MINDEDITING_RELEASE}iter_300000_rvrt_38.12.ckpt",
            license=_MINDEDITING_LICENSE,
            source=_MINDEDITING_SOURCE,
        ),
        metrics=(Metric("Vimeo-90K-T", "Y", 38.12, None, _MINDEDITING_VIMEO),),
        tile=(0, 0, 0),
        tile_overlap=(2, 20, 20),
        train_frames=14,
    )
)


# --------------------------------------------------------------------------- ours

# rvrt's own small x4 models' network, that of src/rvrt/recipes/default_sr_small.toml (the kwargs below
# are that recipe's [model.kwargs]; a test keeps them equal). Weights ship inside the package, stored
# as float16 (the model computes in float32). Data, time and hardware: docs/DEFAULT_MODEL.md.
_RVRT_SR_SMALL = dict(
    upscale=4,
    clip_size=2,
    img_size=[2, 64, 64],
    window_size=[2, 8, 8],
    num_blocks=[1, 2, 1],
    depths=[2, 2, 2],
    embed_dims=[32, 32, 32],
    num_heads=[2, 2, 2],
    inputconv_groups=[1, 1, 1, 1, 1, 1],
    deformable_groups=4,
    attention_heads=4,
    attention_window=[3, 3],
    cpu_cache_length=100,
)
_VID4_OURS = "measured: rvrt eval --protocol vid4 (Y, no border crop, as the official test), shipped float16 weights"


def _ours(name, description, bundled, sha256, source, calendar, city, extras):
    """Register one of rvrt's own small x4 models (weights bundled, Apache-2.0), scored on Vid4
    calendar and city (``(psnr, ssim)``, Y)."""
    return register(
        ModelSpec(
            name=name,
            params=_PARAMS[name],
            arch="rvrt",
            kwargs=_RVRT_SR_SMALL,
            task="sr",
            scale=4,
            description=description,
            weights=WeightsSpec(bundled=bundled, sha256=sha256, license="Apache-2.0", source=source),
            metrics=(
                Metric("Vid4 calendar", "Y", *calendar, _VID4_OURS + "; bicubic 20.39/0.5720"),
                Metric("Vid4 city", "Y", *city, _VID4_OURS + "; bicubic 25.16/0.6028"),
            ),
            tile=(0, 0, 0),
            tile_overlap=(2, 20, 20),
            train_frames=6,
            extras=extras,
        )
    )


# bfloat16 autocast changes the saved 8-bit output of both by at most 2 levels on real frames
# (benchmarks/bench_precision.py, docs/PERFORMANCE.md and docs/DEFAULT_MODEL.md): dtype "auto" uses it
# on CPUs with AMX/AVX512-BF16 ("auto_bf16")
_ours(
    "rvrt.sr_small",
    "rvrt's first small model (32 channels, 2.9 M parameters): x4 video SR, bicubic (BI); "
    "trained by us on one Apache-2.0 clip, CPU-friendly",
    "rvrt_sr_small.safetensors",
    "0b9fe14c5e43fb501bf7c3897cd7931f86b51a2db921d9b11a91ea895b00acbb",
    "trained by the rvrt project (recipe default_sr_small, docs/DEFAULT_MODEL.md) on "
    "01_dog.mp4 of facebookresearch/sam2 (Apache-2.0)",
    calendar=(21.20, 0.6492),
    city=(25.50, 0.6421),
    extras={"auto_bf16": True, "recipe": "default_sr_small"},
)

# The default since issue 13: the same network, the average (half each) of two fine-tunes of
# rvrt.sr_small on three licence-clean clips, one on clean BI x4 (recipe default_sr_small) and one on
# the real-world pipeline (recipe realworld_sr_small_ft). It beats rvrt.sr_small on clean and on
# H.264-compressed input; data, commands and scores: docs/DEFAULT_MODEL.md.
_ours(
    "rvrt.sr_small_v2",
    "rvrt's default model (32 channels, 2.9 M parameters): x4 video SR for clean and compressed (H.264) "
    "input; rvrt.sr_small fine-tuned by us on three licence-clean clips, CPU-friendly",
    "rvrt_sr_small_v2.safetensors",
    "2aa2c186c6a660793b861c663da0c5787443d1e19c9a2c96471f1c3eb7502ef8",
    "trained by the rvrt project (docs/DEFAULT_MODEL.md): the average of rvrt.sr_small fine-tuned "
    "on clean BI x4 (recipe default_sr_small) and on the real-world pipeline (recipe realworld_sr_small_ft), "
    "on bigbuckbunny.mp4 (Blender Foundation, CC-BY-3.0), 04_coffee.mp4 and 01_dog.mp4 of "
    "facebookresearch/sam2 (Apache-2.0)",
    calendar=(21.23, 0.6474),
    city=(25.61, 0.6454),
    extras={"auto_bf16": True, "average_of": ("default_sr_small", "realworld_sr_small_ft")},
)
