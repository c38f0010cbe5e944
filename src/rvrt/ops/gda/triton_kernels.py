"""Triton kernels of guided deformable attention (forward and backward).

Only ``@triton.jit`` code lives here; launchers, autotuning and autograd are in ``triton_op.py``.
The semantics are those of :func:`rvrt.ops.gda.reference.gda_reference`.

Notation used in the shape comments: ``B = N * CLIP`` query frames, ``C`` query channels,
``HEADS`` heads of ``D = C / HEADS`` channels, ``G`` deformable groups over the ``2C`` key|value
channels (``CG = 2C / G`` channels each), ``TAPS = KH * KW`` window taps, ``P = H * W`` pixels.

One program handles ``BLOCK_P`` query pixels of one head of one query frame. It walks the
``CLIP * TAPS`` samples once: for each it bilinearly samples the head's key and value channels
(four corner gathers each, straight from ``kv``; no im2col buffer), updates an online softmax and
accumulates the output in float32. ``kv`` is expected channels-last, ``(N, CLIP, H, W, 2C)``, so
that a corner gather reads the head's ``D`` channels as one contiguous run.

Logits are kept in base 2 (``q`` is pre-scaled by ``D ** -0.5 * log2(e)``) so the softmax uses
``exp2``; the saved log-sum-exp is in the same units.
"""

from __future__ import annotations

import triton
import triton.language as tl

# Only core builtins and the helpers below are used (no ``tl.sum``/``tl.zeros``, which are
# ``@triton.jit`` functions of triton's standard library): the launcher can then rebuild these
# kernels for the interpreter even when triton was imported before TRITON_INTERPRET was set.


@triton.jit
def _add(a, b):
    return a + b


# the combine function of tl.sum: the interpreter recognises it and reduces with numpy
# (a custom one would be called element by element)
_sum_combine = getattr(tl.standard, "_sum_combine", _add)


@triton.jit
def _rowsum(x):
    """Sum over axis 1 of a ``[BLOCK_P, BLOCK_D]`` tile."""
    return tl.reduce(x, 1, _sum_combine)


@triton.jit
def _corners(y, x, H, W):
    """Integer top-left corner, fractional parts and the validity of the four corners."""
    y0f = tl.floor(y)
    x0f = tl.floor(x)
    ly = y - y0f
    lx = x - x0f
    y0 = y0f.to(tl.int32)
    x0 = x0f.to(tl.int32)
    in_y0 = (y0 >= 0) & (y0 < H)
    in_y1 = (y0 >= -1) & (y0 < H - 1)
    in_x0 = (x0 >= 0) & (x0 < W)
    in_x1 = (x0 >= -1) & (x0 < W - 1)
    return y0, x0, ly, lx, in_y0, in_y1, in_x0, in_x1


@triton.jit
def _gather4(frame_ptr, ch_off, y0, x0, s_h, s_w, in_y0, in_y1, in_x0, in_x1, mask):
    """The four corner values (float32), zero where a corner lies outside the image.

    ``ch_off``: channel offsets ``[1, BLOCK_D]``; ``y0``/``x0``/``in_*``: ``[BLOCK_P, 1]`` or
    ``[BLOCK_P, BLOCK_D]``; ``mask``: ``[BLOCK_P, BLOCK_D]`` live lanes.
    """
    p00 = frame_ptr + y0 * s_h + x0 * s_w + ch_off
    v00 = tl.load(p00, mask=mask & in_y0 & in_x0, other=0.0).to(tl.float32)
    v01 = tl.load(p00 + s_w, mask=mask & in_y0 & in_x1, other=0.0).to(tl.float32)
    v10 = tl.load(p00 + s_h, mask=mask & in_y1 & in_x0, other=0.0).to(tl.float32)
    v11 = tl.load(p00 + s_h + s_w, mask=mask & in_y1 & in_x1, other=0.0).to(tl.float32)
    return v00, v01, v10, v11


@triton.jit
def _scatter4(frame_ptr, ch_off, y0, x0, s_h, s_w, in_y0, in_y1, in_x0, in_x1, mask, g, ly, lx):
    """Adds ``g`` times each bilinear corner weight to the four corners (atomic, float32)."""
    hy = 1.0 - ly
    hx = 1.0 - lx
    p00 = frame_ptr + y0 * s_h + x0 * s_w + ch_off
    tl.atomic_add(p00, g * (hy * hx), mask=mask & in_y0 & in_x0, sem="relaxed")
    tl.atomic_add(p00 + s_w, g * (hy * lx), mask=mask & in_y0 & in_x1, sem="relaxed")
    tl.atomic_add(p00 + s_h, g * (ly * hx), mask=mask & in_y1 & in_x0, sem="relaxed")
    tl.atomic_add(p00 + s_h + s_w, g * (ly * lx), mask=mask & in_y1 & in_x1, sem="relaxed")


@triton.jit
def _offset_ptrs(
    off_ptr,
    b,
    head,
    d,
    pix_off,
    s_ob,
    s_oc,
    m,
    k,
    VALUES: tl.constexpr,
    D: tl.constexpr,
    CG: tl.constexpr,
    G: tl.constexpr,
    TAPS: tl.constexpr,
    HEAD_IN_GROUP: tl.constexpr,
):
    """Pointers to the ``dy`` offsets of slot ``m``, tap ``k`` (``dx`` is one channel further).

    With ``HEAD_IN_GROUP`` the head's channels share one group: ``[BLOCK_P, 1]`` pointers.
    Otherwise each channel looks up its own group: ``[BLOCK_P, BLOCK_D]``.
    """
    if HEAD_IN_GROUP:
        grp = (head * D) // CG
    else:
        grp = (head * D + d) // CG  # [1, BLOCK_D]
    if VALUES:
        grp += G // 2
    ch = ((m * G + grp) * TAPS + k) * 2
    return off_ptr + b.to(tl.int64) * s_ob + ch * s_oc + pix_off


# fmt: off
@triton.jit
def gda_fwd_kernel(
    q_ptr,    # (B, C, H, W) queries, any strides
    kv_ptr,   # (N, CLIP, H, W, 2C) keys | values; channel stride 1 makes the gathers contiguous
    off_ptr,  # (B, CLIP * G * TAPS * 2, H, W) offsets, (dy, dx) pairs, any strides
    out_ptr,  # (B, C, H, W) output, written
    lse_ptr,  # (B, HEADS, H * W) float32 contiguous, base-2 log-sum-exp, written
    H, W, HEADS,
    s_qb, s_qc, s_qh, s_qw,        # q strides
    s_kn, s_kt, s_kh, s_kw, s_kc,  # kv strides
    s_ob, s_oc, s_oh, s_ow,        # offset strides
    s_yb, s_yc, s_yh, s_yw,        # out strides
    qk_scale,  # D ** -0.5 * log2(e)
    C: tl.constexpr, D: tl.constexpr, CG: tl.constexpr, G: tl.constexpr,
    CLIP: tl.constexpr, KH: tl.constexpr, KW: tl.constexpr,
    HEAD_IN_GROUP: tl.constexpr,  # CG % D == 0: every head lies inside one deformable group
    BLOCK_P: tl.constexpr, BLOCK_D: tl.constexpr,
):
    # fmt: on
    TAPS: tl.constexpr = KH * KW
    pid = tl.program_id(0)
    b = tl.program_id(1)
    # heads of one pixel block are neighbours in launch order: they read the same cache lines of kv
    head = pid % HEADS
    pblk = pid // HEADS
    n = b // CLIP
    t = b % CLIP

    pix = pblk * BLOCK_P + tl.arange(0, BLOCK_P)
    d = tl.arange(0, BLOCK_D)
    pmask = pix < H * W
    py = pix // W
    px = pix % W
    d2 = d[None, :]
    mask = pmask[:, None] & (d2 < D)
    pyf = py[:, None].to(tl.float32)
    pxf = px[:, None].to(tl.float32)
    pix_off = py[:, None] * s_oh + px[:, None] * s_ow

    q_ch = head * D + d2
    q_ptrs = q_ptr + b.to(tl.int64) * s_qb + q_ch * s_qc + py[:, None] * s_qh + px[:, None] * s_qw
    qs = tl.load(q_ptrs, mask=mask, other=0.0).to(tl.float32) * qk_scale

    m_i = tl.full([BLOCK_P], float("-inf"), tl.float32)
    l_i = tl.full([BLOCK_P], 0.0, tl.float32)
    acc = tl.full([BLOCK_P, BLOCK_D], 0.0, tl.float32)
    k_ch = q_ch * s_kc
    v_ch = (C + q_ch) * s_kc
    omask = pmask[:, None] if HEAD_IN_GROUP else mask

    # a runtime loop: unrolled, the compiler hoists the gathers of all samples and spills
    for smp in range(CLIP * TAPS):
        m = smp // TAPS
        k = smp % TAPS
        frame = kv_ptr + n.to(tl.int64) * s_kn + ((m + t) % CLIP).to(tl.int64) * s_kt
        ty = pyf + (k // KW - KH // 2).to(tl.float32)
        tx = pxf + (k % KW - KW // 2).to(tl.float32)
        # keys
        o_ptrs = _offset_ptrs(
            off_ptr, b, head, d2, pix_off, s_ob, s_oc, m, k, False, D, CG, G, TAPS, HEAD_IN_GROUP
        )
        y = ty + tl.load(o_ptrs, mask=omask, other=0.0).to(tl.float32)
        x = tx + tl.load(o_ptrs + s_oc, mask=omask, other=0.0).to(tl.float32)
        y0, x0, ly, lx, iy0, iy1, ix0, ix1 = _corners(y, x, H, W)
        v00, v01, v10, v11 = _gather4(frame, k_ch, y0, x0, s_kh, s_kw, iy0, iy1, ix0, ix1, mask)
        hy = 1.0 - ly
        hx = 1.0 - lx
        ks = hy * hx * v00 + hy * lx * v01 + ly * hx * v10 + ly * lx * v11
        s = _rowsum(qs * ks)
        # online softmax
        m_new = tl.maximum(m_i, s)
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(s - m_new)
        l_i = l_i * alpha + p
        m_i = m_new
        # values
        o_ptrs = _offset_ptrs(
            off_ptr, b, head, d2, pix_off, s_ob, s_oc, m, k, True, D, CG, G, TAPS, HEAD_IN_GROUP
        )
        y = ty + tl.load(o_ptrs, mask=omask, other=0.0).to(tl.float32)
        x = tx + tl.load(o_ptrs + s_oc, mask=omask, other=0.0).to(tl.float32)
        y0, x0, ly, lx, iy0, iy1, ix0, ix1 = _corners(y, x, H, W)
        v00, v01, v10, v11 = _gather4(frame, v_ch, y0, x0, s_kh, s_kw, iy0, iy1, ix0, ix1, mask)
        hy = 1.0 - ly
        hx = 1.0 - lx
        vs = hy * hx * v00 + hy * lx * v01 + ly * hx * v10 + ly * lx * v11
        acc = acc * alpha[:, None] + p[:, None] * vs

    out = acc / l_i[:, None]
    y_ptrs = out_ptr + b.to(tl.int64) * s_yb + q_ch * s_yc + py[:, None] * s_yh + px[:, None] * s_yw
    tl.store(y_ptrs, out.to(out_ptr.dtype.element_ty), mask=mask)
    lse = m_i + tl.log2(l_i)
    tl.store(lse_ptr + (b * HEADS + head).to(tl.int64) * H * W + pix, lse, mask=pmask)


# fmt: off
@triton.jit
def gda_bwd_kernel(
    q_ptr,     # (B, C, H, W) queries, any strides
    kv_ptr,    # (N, CLIP, H, W, 2C) keys | values, channel stride 1
    off_ptr,   # (B, CLIP * G * TAPS * 2, H, W) offsets, any strides
    out_ptr,   # (B, C, H, W) forward output
    dout_ptr,  # (B, C, H, W) gradient of the output (any strides, stride 0 too)
    lse_ptr,   # (B, HEADS, H * W) float32 contiguous, base-2 log-sum-exp of the forward
    dq_ptr,    # (B, C, H, W) gradient of q, written
    dkv_ptr,   # (N, CLIP, H, W, 2C) float32, zero-filled; the gradient of kv is added atomically
    doff_ptr,  # (B, CLIP * G * TAPS * 2, H, W) float32 contiguous, zero-filled; added atomically
    H, W, HEADS,
    s_qb, s_qc, s_qh, s_qw,        # q strides
    s_kn, s_kt, s_kh, s_kw, s_kc,  # kv strides
    s_ob, s_oc, s_oh, s_ow,        # offset strides
    s_yb, s_yc, s_yh, s_yw,        # out strides
    s_gb, s_gc, s_gh, s_gw,        # dout strides
    s_xb, s_xc, s_xh, s_xw,        # dq strides
    s_an, s_at, s_ah, s_aw, s_ac,  # dkv strides
    qk_scale,  # D ** -0.5 * log2(e)
    sm_scale,  # D ** -0.5
    C: tl.constexpr, D: tl.constexpr, CG: tl.constexpr, G: tl.constexpr,
    CLIP: tl.constexpr, KH: tl.constexpr, KW: tl.constexpr,
    HEAD_IN_GROUP: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_D: tl.constexpr,
):
    # fmt: on
    TAPS: tl.constexpr = KH * KW
    pid = tl.program_id(0)
    b = tl.program_id(1)
    head = pid % HEADS
    pblk = pid // HEADS
    n = b // CLIP
    t = b % CLIP

    pix = pblk * BLOCK_P + tl.arange(0, BLOCK_P)
    d = tl.arange(0, BLOCK_D)
    pmask = pix < H * W
    py = pix // W
    px = pix % W
    d2 = d[None, :]
    mask = pmask[:, None] & (d2 < D)
    pyf = py[:, None].to(tl.float32)
    pxf = px[:, None].to(tl.float32)
    pix_off = py[:, None] * s_oh + px[:, None] * s_ow
    # the offset gradient is a contiguous float32 copy of the offset layout
    dpix_off = (py * W + px)[:, None]
    s_dob = CLIP * G * TAPS * 2 * H * W
    s_doc = H * W

    q_ch = head * D + d2
    bb = b.to(tl.int64)
    q_raw = tl.load(
        q_ptr + bb * s_qb + q_ch * s_qc + py[:, None] * s_qh + px[:, None] * s_qw, mask=mask, other=0.0
    ).to(tl.float32)
    qs = q_raw * qk_scale  # base-2 logits
    q_nat = q_raw * sm_scale  # natural-log logits, for the gradient
    o = tl.load(
        out_ptr + bb * s_yb + q_ch * s_yc + py[:, None] * s_yh + px[:, None] * s_yw, mask=mask, other=0.0
    ).to(tl.float32)
    do = tl.load(
        dout_ptr + bb * s_gb + q_ch * s_gc + py[:, None] * s_gh + px[:, None] * s_gw, mask=mask, other=0.0
    ).to(tl.float32)
    delta = _rowsum(o * do)  # sum over samples of p * dp, from the output
    lse = tl.load(lse_ptr + (b * HEADS + head).to(tl.int64) * H * W + pix, mask=pmask, other=0.0)

    dq = tl.full([BLOCK_P, BLOCK_D], 0.0, tl.float32)
    k_ch = q_ch * s_kc
    v_ch = (C + q_ch) * s_kc
    ka_ch = q_ch * s_ac
    va_ch = (C + q_ch) * s_ac
    omask = pmask[:, None] if HEAD_IN_GROUP else mask

    for smp in range(CLIP * TAPS):
        m = smp // TAPS
        k = smp % TAPS
        f = ((m + t) % CLIP).to(tl.int64)
        frame = kv_ptr + n.to(tl.int64) * s_kn + f * s_kt
        gframe = dkv_ptr + n.to(tl.int64) * s_an + f * s_at
        ty = pyf + (k // KW - KH // 2).to(tl.float32)
        tx = pxf + (k % KW - KW // 2).to(tl.float32)
        # keys: sample, logits, probabilities
        o_ptrs = _offset_ptrs(
            off_ptr, b, head, d2, pix_off, s_ob, s_oc, m, k, False, D, CG, G, TAPS, HEAD_IN_GROUP
        )
        go_k = _offset_ptrs(
            doff_ptr, b, head, d2, dpix_off, s_dob, s_doc, m, k, False, D, CG, G, TAPS, HEAD_IN_GROUP
        )
        y = ty + tl.load(o_ptrs, mask=omask, other=0.0).to(tl.float32)
        x = tx + tl.load(o_ptrs + s_oc, mask=omask, other=0.0).to(tl.float32)
        ky0, kx0, kly, klx, kiy0, kiy1, kix0, kix1 = _corners(y, x, H, W)
        k00, k01, k10, k11 = _gather4(frame, k_ch, ky0, kx0, s_kh, s_kw, kiy0, kiy1, kix0, kix1, mask)
        khy = 1.0 - kly
        khx = 1.0 - klx
        ks = khy * khx * k00 + khy * klx * k01 + kly * khx * k10 + kly * klx * k11
        p = tl.exp2(_rowsum(qs * ks) - lse)
        # values
        o_ptrs = _offset_ptrs(
            off_ptr, b, head, d2, pix_off, s_ob, s_oc, m, k, True, D, CG, G, TAPS, HEAD_IN_GROUP
        )
        go_v = _offset_ptrs(
            doff_ptr, b, head, d2, dpix_off, s_dob, s_doc, m, k, True, D, CG, G, TAPS, HEAD_IN_GROUP
        )
        y = ty + tl.load(o_ptrs, mask=omask, other=0.0).to(tl.float32)
        x = tx + tl.load(o_ptrs + s_oc, mask=omask, other=0.0).to(tl.float32)
        vy0, vx0, vly, vlx, viy0, viy1, vix0, vix1 = _corners(y, x, H, W)
        v00, v01, v10, v11 = _gather4(frame, v_ch, vy0, vx0, s_kh, s_kw, viy0, viy1, vix0, vix1, mask)
        vhy = 1.0 - vly
        vhx = 1.0 - vlx
        vs = vhy * vhx * v00 + vhy * vlx * v01 + vly * vhx * v10 + vly * vlx * v11

        ds = p * (_rowsum(do * vs) - delta)  # gradient of the natural-log logit
        dq += ds[:, None] * ks
        gk = ds[:, None] * q_nat  # gradient of the key sample
        gv = p[:, None] * do  # gradient of the value sample
        _scatter4(gframe, ka_ch, ky0, kx0, s_ah, s_aw, kiy0, kiy1, kix0, kix1, mask, gk, kly, klx)
        _scatter4(gframe, va_ch, vy0, vx0, s_ah, s_aw, viy0, viy1, vix0, vix1, mask, gv, vly, vlx)
        # position gradients: derivative of the bilinear weights w.r.t. (y, x)
        gky = gk * (khx * (k10 - k00) + klx * (k11 - k01))
        gkx = gk * (khy * (k01 - k00) + kly * (k11 - k10))
        gvy = gv * (vhx * (v10 - v00) + vlx * (v11 - v01))
        gvx = gv * (vhy * (v01 - v00) + vly * (v11 - v10))
        if HEAD_IN_GROUP:
            # several heads may share the group: atomics, but one per pixel
            tl.atomic_add(go_k, _rowsum(gky)[:, None], mask=omask, sem="relaxed")
            tl.atomic_add(go_k + s_doc, _rowsum(gkx)[:, None], mask=omask, sem="relaxed")
            tl.atomic_add(go_v, _rowsum(gvy)[:, None], mask=omask, sem="relaxed")
            tl.atomic_add(go_v + s_doc, _rowsum(gvx)[:, None], mask=omask, sem="relaxed")
        else:
            tl.atomic_add(go_k, gky, mask=omask, sem="relaxed")
            tl.atomic_add(go_k + s_doc, gkx, mask=omask, sem="relaxed")
            tl.atomic_add(go_v, gvy, mask=omask, sem="relaxed")
            tl.atomic_add(go_v + s_doc, gvx, mask=omask, sem="relaxed")

    dq = dq * sm_scale
    tl.store(
        dq_ptr + bb * s_xb + q_ch * s_xc + py[:, None] * s_xh + px[:, None] * s_xw,
        dq.to(dq_ptr.dtype.element_ty),
        mask=mask,
    )
