"""The three Triton kernels every op is built from, with their launchers.

- ``gemm``: ``C = RES + alpha * (P @ Q + bias) + lr_scale * drop(U @ V) + gather(G)``, then an
  optional activation epilogue; one program per output tile, full reduction inside. The LoRA
  update, the residual, the bias and the activation cost no extra pass over memory. (``alpha``
  must be 1 with a low-rank or gathered term: those initialise the accumulator.)
- ``splitk``: ``OUT = scale * drop(P) @ Q`` for a narrow ``Q`` (rank-sized), the reduction split
  across programs (fp32 partial sums added afterwards) so that long reductions over tokens fill the
  GPU; optionally the row sums of ``P`` (a bias gradient) in the same pass.
- ``gather_columns``: ``X[:, idx]``.

Every operand is addressed through its strides, so transposed and strided views need no copy.
Tiles are loaded in their storage dtype and converted to the compute dtype (see
``triton_common.compute_dtype``); accumulation is always fp32.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .triton_common import (
    AUTOTUNE,
    INTERPRET,
    NO_DROPOUT,
    Dropout,
    activation,
    activation_grad,
    add_fn,
    cdiv,
    compute_dtype,
    dot_precision,
    keep_tile,
    new_output,
    next_pow2,
    num_sms,
)


def _gemm_configs() -> list[triton.Config]:
    if INTERPRET:  # one config: no autotuning (it would need a GPU timer), small tiles
        return [triton.Config({"BM": 32, "BN": 32, "BK": 32, "GROUP_M": 2})]
    if not AUTOTUNE:  # one config that fits every variant's register budget
        return [triton.Config({"BM": 64, "BN": 64, "BK": 64, "GROUP_M": 8}, num_warps=4)]
    shapes = [
        (128, 256, 64, 8, 3),
        (256, 128, 64, 8, 3),
        (128, 128, 64, 4, 4),
        (128, 128, 64, 8, 4),
        (128, 64, 64, 4, 4),
        (128, 64, 64, 8, 4),
        (64, 128, 64, 4, 4),
        (64, 64, 64, 4, 4),
    ]
    return [
        triton.Config({"BM": bm, "BN": bn, "BK": bk, "GROUP_M": 8}, num_warps=w, num_stages=s)
        for bm, bn, bk, w, s in shapes
    ]


def _splitk_configs() -> list[triton.Config]:
    if INTERPRET:
        return [triton.Config({"BI": 32, "BJ": 32})]
    if not AUTOTUNE:
        return [triton.Config({"BI": 64, "BJ": 64}, num_warps=4)]
    shapes = [(128, 64, 4, 4), (64, 128, 4, 4), (128, 128, 8, 3), (128, 64, 8, 4), (64, 64, 4, 4)]
    return [
        triton.Config({"BI": bi, "BJ": bj}, num_warps=w, num_stages=s) for bi, bj, w, s in shapes
    ]


# The reduction of one split is a multiple of every BJ above.
_J_ALIGN = 32 if INTERPRET else 256


# Autotuning keys: the shapes (M bucketed: token counts vary per batch) and every flag that
# changes the kernel, so that each variant gets its own tuned config.
_GEMM_KEY = ["M_BUCKET", "N", "K", "R", "BR", "HAS_BIAS", "HAS_RES", "HAS_LR", "LR_DROPOUT"]
_GEMM_KEY += ["HAS_GATHER", "ACT", "EPI"]


def _acc_regs(config: triton.Config, rows: str, cols: str) -> int:
    return config.kwargs[rows] * config.kwargs[cols] // (32 * config.num_warps)


# Largest accumulator (fp32 registers per thread) that compiles without spills on sm_90 (ptxas
# -v, bf16): 128 for a plain epilogue, 64 with a residual, gather or activation tile, 32 where the
# dropout generator (four 32-bit words per element) runs on the whole tile; 64 at most for fp32.
def _prune_gemm(configs: list[triton.Config], named_args: dict, **kwargs) -> list[triton.Config]:
    if kwargs.get("LR_DROPOUT"):
        limit = 32
    elif kwargs.get("HAS_RES") or kwargs.get("HAS_GATHER") or kwargs.get("EPI", 0) != 0:
        limit = 64
    else:
        limit = 128
    if kwargs.get("COMPUTE") == tl.float32:  # fp32 tiles are twice as large
        limit = min(limit, 64)
    kept = [c for c in configs if _acc_regs(c, "BM", "BN") <= limit]
    return kept or configs[-1:]


def _prune_splitk(configs: list[triton.Config], named_args: dict, **kwargs) -> list[triton.Config]:
    # The P tile is the big register user once it is processed element-wise.
    limit = 32 if kwargs.get("P_DROPOUT") or kwargs.get("ROWSUM") else 64
    kept = [c for c in configs if _acc_regs(c, "BI", "BJ") <= limit]
    return kept or configs[-1:]


@triton.autotune(
    configs=_gemm_configs(), key=_GEMM_KEY, prune_configs_by={"early_config_prune": _prune_gemm}
)
@triton.heuristics(
    {
        "EVEN_K": lambda args: args["K"] % args["BK"] == 0,
        "EVEN_MN": lambda args: args["M"] % args["BM"] == 0 and args["N"] % args["BN"] == 0,
    }
)
@triton.jit(do_not_specialize=["seed_lo", "seed_hi", "drop_thr"])
def _gemm_kernel(
    p_ptr, q_ptr, c_ptr, bias_ptr, res_ptr, u_ptr, v_ptr, g_ptr, cmap_ptr, z_ptr, c2_ptr,
    M, N, K, R, M_BUCKET,
    s_pm, s_pk, s_qk, s_qn, s_cm, s_cn, s_rm, s_rn,
    s_um, s_ur, s_vr, s_vn, s_gm, s_gj, s_zm, s_zn, s_c2m, s_c2n,
    alpha, lr_scale, seed_lo, seed_hi, drop_thr, keep_scale, mask_sm, mask_sn,
    HAS_BIAS: tl.constexpr, HAS_RES: tl.constexpr, HAS_LR: tl.constexpr,
    LR_DROPOUT: tl.constexpr, HAS_GATHER: tl.constexpr, ACT: tl.constexpr, EPI: tl.constexpr,
    COMPUTE: tl.constexpr, PRECISION: tl.constexpr,
    BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, BR: tl.constexpr,
    GROUP_M: tl.constexpr, EVEN_K: tl.constexpr, EVEN_MN: tl.constexpr,
):  # fmt: skip
    # Grouped tile order: GROUP_M row-blocks share the columns of Q while they are in L2.
    pid = tl.program_id(0)
    num_m = (M + BM - 1) // BM
    num_n = (N + BN - 1) // BN
    width = GROUP_M * num_n
    first_m = (pid // width) * GROUP_M
    group_size = tl.minimum(num_m - first_m, GROUP_M)
    pid_m = first_m + (pid % width) % group_size
    pid_n = (pid % width) // group_size

    rm = pid_m * BM + tl.arange(0, BM)
    rn = pid_n * BN + tl.arange(0, BN)
    rk = tl.arange(0, BK)
    m_ok = rm < M
    n_ok = rn < N
    c_mask = m_ok[:, None] & n_ok[None, :]
    # Plain (unclamped) indices and masks: the compiler sees contiguous runs of addresses and
    # issues wide loads along whichever dimension is contiguous in memory. (Clamping indices
    # with tl.where hides that and made a [K, N]-contiguous operand load element by element,
    # 8x slower on an H100.) Tiles that divide the shape need no mask at all.
    rm64 = rm.to(tl.int64)
    rn64 = rn.to(tl.int64)
    p_ptrs = p_ptr + rm64[:, None] * s_pm + rk[None, :] * s_pk
    q_ptrs = q_ptr + rk[:, None] * s_qk + rn64[None, :] * s_qn

    # The low-rank term and the gathered columns come first: they are the accumulator's initial
    # value, so the epilogue never holds a second [BM, BN] tile (and the dropout mask is made
    # before the pipelined main loop needs its registers).
    acc = tl.full((BM, BN), 0.0, tl.float32)
    if HAS_LR:
        rr = tl.arange(0, BR)
        for r0 in range(0, R, BR):
            r_ok = rr < R - r0
            u = tl.load(u_ptr + rm64[:, None] * s_um + (r0 + rr)[None, :] * s_ur,
                        mask=m_ok[:, None] & r_ok[None, :], other=0.0)  # fmt: skip
            v = tl.load(v_ptr + (r0 + rr)[:, None] * s_vr + rn64[None, :] * s_vn,
                        mask=r_ok[:, None] & n_ok[None, :], other=0.0)  # fmt: skip
            acc = tl.dot(u.to(COMPUTE), v.to(COMPUTE), acc, input_precision=PRECISION)
        if LR_DROPOUT:
            offs = rm64[:, None] * mask_sm + rn64[None, :] * mask_sn
            keep = keep_tile(seed_lo, seed_hi, offs, drop_thr)
            acc = tl.where(keep, acc * (keep_scale * lr_scale), 0.0)
        else:
            acc = acc * lr_scale
    if HAS_GATHER:  # acc[:, c] = G[:, cmap[c]] where cmap[c] >= 0
        j = tl.load(cmap_ptr + rn64, mask=n_ok, other=-1)
        g_ok = j >= 0
        j_in = tl.where(g_ok, j, 0).to(tl.int64)
        g = tl.load(g_ptr + rm64[:, None] * s_gm + j_in[None, :] * s_gj,
                    mask=m_ok[:, None] & g_ok[None, :], other=0.0)  # fmt: skip
        acc += g.to(tl.float32)

    for k0 in range(0, K, BK):
        if EVEN_K and EVEN_MN:
            a = tl.load(p_ptrs)
            b = tl.load(q_ptrs)
        else:
            k_ok = rk < K - k0
            a = tl.load(p_ptrs, mask=m_ok[:, None] & k_ok[None, :], other=0.0)
            b = tl.load(q_ptrs, mask=k_ok[:, None] & n_ok[None, :], other=0.0)
        acc = tl.dot(a.to(COMPUTE), b.to(COMPUTE), acc, input_precision=PRECISION)
        p_ptrs += BK * s_pk
        q_ptrs += BK * s_qk

    if HAS_BIAS:
        bias = tl.load(bias_ptr + rn64, mask=n_ok, other=0.0).to(tl.float32)
        acc += bias[None, :]
    acc = acc * alpha  # 1 whenever there is a low-rank or gathered term (checked by the launcher)

    if EPI == 2:  # acc *= act'(Z)
        z = tl.load(z_ptr + rm64[:, None] * s_zm + rn64[None, :] * s_zn, mask=c_mask, other=0.0)
        z = z.to(tl.float32)
        acc = acc * activation_grad(z, ACT)
    if HAS_RES:
        res = tl.load(res_ptr + rm64[:, None] * s_rm + rn64[None, :] * s_rn, mask=c_mask, other=0.0)
        acc += res.to(tl.float32)

    tl.store(c_ptr + rm64[:, None] * s_cm + rn64[None, :] * s_cn,
             acc.to(c_ptr.dtype.element_ty), mask=c_mask)  # fmt: skip
    if EPI == 1:  # also store act(acc)
        tl.store(c2_ptr + rm64[:, None] * s_c2m + rn64[None, :] * s_c2n,
                 activation(acc, ACT).to(c2_ptr.dtype.element_ty), mask=c_mask)  # fmt: skip


_SPLITK_KEY = ["I_BUCKET", "J_BUCKET", "R", "j_per_split", "BR", "P_DROPOUT", "ROWSUM"]


@triton.autotune(
    configs=_splitk_configs(),
    key=_SPLITK_KEY,
    prune_configs_by={"early_config_prune": _prune_splitk},
)
@triton.heuristics(
    {
        "EVEN": lambda args: (
            args["NI"] % args["BI"] == 0
            and args["NJ"] % args["BJ"] == 0
            and args["R"] % args["BR"] == 0
        )
    }
)
@triton.jit(do_not_specialize=["seed_lo", "seed_hi", "drop_thr"])
def _splitk_kernel(
    p_ptr, q_ptr, out_ptr, rowsum_ptr,
    NI, NJ, R, j_per_split, I_BUCKET, J_BUCKET,
    s_pi, s_pj, s_qj, s_qr, s_os, s_oi, s_or, s_rs,
    scale, seed_lo, seed_hi, drop_thr, keep_scale, mask_si, mask_sj,
    P_DROPOUT: tl.constexpr, ROWSUM: tl.constexpr,
    COMPUTE: tl.constexpr, PRECISION: tl.constexpr,
    BI: tl.constexpr, BJ: tl.constexpr, BR: tl.constexpr, EVEN: tl.constexpr,
):  # fmt: skip
    pid_i = tl.program_id(0)
    pid_r = tl.program_id(1)
    pid_s = tl.program_id(2)
    ri = pid_i * BI + tl.arange(0, BI)
    rr = pid_r * BR + tl.arange(0, BR)
    rj = tl.arange(0, BJ)
    i_ok = ri < NI
    r_ok = rr < R
    ri64 = ri.to(tl.int64)  # unclamped, masked: see the GEMM kernel
    j_start = pid_s * j_per_split
    j_end = tl.minimum(j_start + j_per_split, NJ)

    acc = tl.full((BI, BR), 0.0, tl.float32)
    rsum = tl.full((BI,), 0.0, tl.float32)
    for j0 in range(j_start, j_end, BJ):
        # A split's length is a multiple of BJ: only the data's end cuts a tile short.
        j = (j0 + rj).to(tl.int64)
        p_ptrs = p_ptr + ri64[:, None] * s_pi + j[None, :] * s_pj
        q_ptrs = q_ptr + j[:, None] * s_qj + rr[None, :] * s_qr
        if EVEN:
            p = tl.load(p_ptrs)
            q = tl.load(q_ptrs)
        else:
            j_ok = j < NJ
            p = tl.load(p_ptrs, mask=i_ok[:, None] & j_ok[None, :], other=0.0)
            q = tl.load(q_ptrs, mask=j_ok[:, None] & r_ok[None, :], other=0.0)
        if P_DROPOUT:  # inverted dropout in fp32, rounded once to the compute dtype
            offs = ri64[:, None] * mask_si + j[None, :] * mask_sj
            keep = keep_tile(seed_lo, seed_hi, offs, drop_thr)
            p = tl.where(keep, p.to(tl.float32) * keep_scale, 0.0)
        acc = tl.dot(p.to(COMPUTE), q.to(COMPUTE), acc, input_precision=PRECISION)
        if ROWSUM:
            rsum += tl.reduce(p.to(tl.float32), 1, add_fn)

    out = out_ptr + pid_s * s_os + ri64[:, None] * s_oi + rr[None, :] * s_or
    tl.store(out, acc * scale, mask=i_ok[:, None] & r_ok[None, :])
    if ROWSUM:
        first_r = (ri * 0 + pid_r) == 0  # only the first rank-block writes the row sums
        tl.store(rowsum_ptr + pid_s * s_rs + ri, rsum * scale, mask=i_ok & first_r)


@triton.jit
def _gather_kernel(
    x_ptr, idx_ptr, out_ptr, M, KK, s_xm, s_xk, s_om, s_oj,
    BM: tl.constexpr, BJ: tl.constexpr,
):  # fmt: skip
    rm = tl.program_id(0) * BM + tl.arange(0, BM)
    rj = tl.program_id(1) * BJ + tl.arange(0, BJ)
    ok = (rm < M)[:, None] & (rj < KK)[None, :]
    col = tl.load(idx_ptr + rj, mask=rj < KK, other=0).to(tl.int64)
    vals = tl.load(x_ptr + rm.to(tl.int64)[:, None] * s_xm + col[None, :] * s_xk, mask=ok)
    tl.store(out_ptr + rm.to(tl.int64)[:, None] * s_om + rj[None, :] * s_oj, vals, mask=ok)


def _dummy(t: torch.Tensor) -> tuple[torch.Tensor, int, int]:
    return t, 0, 0


def _mat(t: torch.Tensor | None, like: torch.Tensor) -> tuple[torch.Tensor, int, int]:
    """Pointer and two strides of an optional matrix operand (a dummy when absent)."""
    if t is None:
        return _dummy(like)
    return t, t.stride(0), t.stride(1)


def gemm(
    p: torch.Tensor,
    q: torch.Tensor,
    out: torch.Tensor,
    *,
    dtype: torch.dtype,
    bias: torch.Tensor | None = None,
    alpha: float = 1.0,
    residual: torch.Tensor | None = None,
    lowrank: tuple[torch.Tensor, torch.Tensor] | None = None,
    lr_scale: float = 1.0,
    lr_dropout: Dropout = NO_DROPOUT,
    mask_strides: tuple[int, int] = (0, 0),
    gather: tuple[torch.Tensor, torch.Tensor] | None = None,
    act: int = 0,
    act_out: torch.Tensor | None = None,
    act_grad_of: torch.Tensor | None = None,
) -> torch.Tensor:
    """``out = residual + alpha * (p @ q + bias) + lr_scale * drop(u @ v) + gather``, in place.

    ``p``: [M, K], ``q``: [K, N], ``out``: [M, N], ``lowrank``: (u [M, R], v [R, N]),
    ``gather``: (g [M, J], cmap [N] int32, -1 where no column of g is added). With ``act_out``
    the activation of the result is stored there too; with ``act_grad_of`` (z [M, N]) the
    result is multiplied by ``act'(z)`` before the residual. ``dtype`` is the op's input dtype.
    """
    m, k = p.shape
    n = q.shape[1]
    if alpha != 1.0 and (lowrank is not None or gather is not None):
        raise ValueError("gemm: alpha must be 1 with a low-rank or gathered term")
    if m == 0 or n == 0:
        return out
    u, s_um, s_ur = _mat(lowrank[0] if lowrank else None, out)
    v, s_vr, s_vn = _mat(lowrank[1] if lowrank else None, out)
    r = lowrank[0].shape[1] if lowrank else 0
    g, s_gm, s_gj = _mat(gather[0] if gather else None, out)
    cmap = gather[1] if gather else out
    res, s_rm, s_rn = _mat(residual, out)
    z, s_zm, s_zn = _mat(act_grad_of, out)
    c2, s_c2m, s_c2n = _mat(act_out, out)
    epi = 1 if act_out is not None else 2 if act_grad_of is not None else 0
    seed_lo, seed_hi, thr, keep_scale = lr_dropout.args()
    br = 16 if INTERPRET else min(max(16, next_pow2(r)), 64)

    def grid(meta: dict) -> tuple[int]:
        return (cdiv(m, meta["BM"]) * cdiv(n, meta["BN"]),)

    _gemm_kernel[grid](
        p, q, out, bias if bias is not None else out, res, u, v, g, cmap, z, c2,
        m, n, k, r, next_pow2(m),
        p.stride(0), p.stride(1), q.stride(0), q.stride(1), out.stride(0), out.stride(1),
        s_rm, s_rn, s_um, s_ur, s_vr, s_vn, s_gm, s_gj, s_zm, s_zn, s_c2m, s_c2n,
        float(alpha), float(lr_scale), seed_lo, seed_hi, thr, keep_scale, *mask_strides,
        HAS_BIAS=bias is not None, HAS_RES=residual is not None, HAS_LR=lowrank is not None,
        LR_DROPOUT=lowrank is not None and lr_dropout.active, HAS_GATHER=gather is not None,
        ACT=act, EPI=epi, COMPUTE=compute_dtype(dtype), PRECISION=dot_precision(dtype), BR=br,
    )  # fmt: skip
    return out


def splitk(
    p: torch.Tensor,
    q: torch.Tensor,
    *,
    dtype: torch.dtype,
    scale: float = 1.0,
    dropout: Dropout = NO_DROPOUT,
    mask_strides: tuple[int, int] = (0, 0),
    rowsum: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``scale * drop(p) @ q`` in fp32 ([I, R]) and, if asked, ``scale * drop(p).sum(1)`` ([I]).

    ``p``: [I, J] (any strides), ``q``: [J, R] with R small. The dropout mask of ``p[i, j]`` is
    the one of flat position ``i * mask_strides[0] + j * mask_strides[1]``.
    """
    i_len, j_len = p.shape
    r = q.shape[1]
    device = p.device
    br = 16 if INTERPRET else min(max(16, next_pow2(r)), 64)
    n_rb = cdiv(r, br)
    # Split the reduction until about two programs per SM (assuming the largest BI).
    programs = cdiv(i_len, 32 if INTERPRET else 128) * n_rb
    splits = max(1, min(cdiv(2 * num_sms(device), programs), cdiv(j_len, _J_ALIGN)))
    j_per_split = cdiv(cdiv(j_len, splits), _J_ALIGN) * _J_ALIGN if j_len else _J_ALIGN
    splits = max(1, cdiv(j_len, j_per_split))
    part = new_output((splits, i_len, r), torch.float32, device)
    rsum = new_output((splits, i_len), torch.float32, device) if rowsum else part
    if i_len and r:
        if j_len == 0:
            part.zero_()
            rsum.zero_()
        else:
            seed_lo, seed_hi, thr, keep_scale = dropout.args()

            def grid(meta: dict) -> tuple[int, int, int]:
                return (cdiv(i_len, meta["BI"]), n_rb, splits)

            _splitk_kernel[grid](
                p, q, part, rsum, i_len, j_len, r, j_per_split, next_pow2(i_len), next_pow2(j_len),
                p.stride(0), p.stride(1), q.stride(0), q.stride(1),
                part.stride(0), part.stride(1), part.stride(2), rsum.stride(0),
                float(scale), seed_lo, seed_hi, thr, keep_scale, *mask_strides,
                P_DROPOUT=dropout.active, ROWSUM=rowsum, COMPUTE=compute_dtype(dtype),
                PRECISION=dot_precision(dtype), BR=br,
            )  # fmt: skip
    out = part[0] if splits == 1 else part.sum(0)
    sums = (rsum[0] if splits == 1 else rsum.sum(0)) if rowsum else None
    return out, sums


def gather_columns(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``x[:, idx]`` for a 2-D ``x`` (any strides) and int ``idx``, as a new contiguous tensor."""
    m = x.shape[0]
    kk = idx.numel()
    out = new_output((m, kk), x.dtype, x.device)
    if m and kk:
        bm, bj = (16, 16) if INTERPRET else (64, 32)
        grid = (cdiv(m, bm), cdiv(kk, bj))
        _gather_kernel[grid](
            x, idx, out, m, kk, x.stride(0), x.stride(1), out.stride(0), out.stride(1),
            BM=bm, BJ=bj,
        )  # fmt: skip
    return out
