"""Integrate the germ line in compiled code from recorded core signals, following the table read from the SBML.

Everything downstream of RAR occupancy in the model (4-oxo-isotretinoin, STRA8, the tight junctions,
and the germ-cell chain from stem cells to the cauda) feeds nothing back to the retinoid core. Given
the core's signals on a time grid, these states form a feed-forward cascade whose equations
:mod:`ra_model.engines.germline_table` reads from the model's own rate laws:
per state ``x' = sum c g s - q(t) x - b x^2 - V x / (K + x)``. This module holds no equation of the
model, only the schemes, compiled once (numba) for any table:

- ``linear`` states: exponential integration with the inflow linear over each step and the loss
  rate averaged over it (exact for a constant rate and linear inflow; second order otherwise);
- ``logistic`` states (the stem pool): the logistic's closed-form solution over each step;
- ``saturable`` states (the caput, whose duct loss makes the ejaculate threshold; stiff when nearly
  empty): TR-BDF2, whose two implicit stages are quadratics solved in closed form;
- the states that read a *fast input* (the spermiation gate, one per focus class: every class's
  mature spermatids and the shared caput), together, in sub-steps that follow each input's cubic
  interpolant, corrected to its exact mean over each step when the core records its integral
  (the split exact path).

Since each state reads only inputs and states before it, the cascade is integrated one state at a
time over the whole grid, with every series contiguous in memory (states and gates are stored
state by state, the transpose of the returned arrays); only the fast-input block goes step by step,
its states together, as they feed each other within the sub-steps. The gates (Hill functions of
STRA8, the junctions, RA) are small expression programs evaluated over the whole grid
(:class:`Program`), the rate constants once per run; work arrays are reused between runs on a
thread. :func:`ra_model.engines.fastpath.check_germline_equations` compares the kernel's rates with
libroadrunner's when an engine is built.

Module attributes ``SPECIES``, ``INPUTS``, ``UPSTREAM``, ``N_STATES``, ``DERIVED_SPECIES`` and the
functions ``parameter_vector``, ``integrate``, ``integrate_driven``, ``steady_state`` and
``refine_driven`` are those of the shipped model's kernel (:func:`default_kernel`).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from numba import njit

from ra_model.engines.germline_table import Expr, GermlineTable, is_constant, names_in, read_germline
from ra_model.model.source import default_sbml

_GAMMA = 2.0 - math.sqrt(2.0)
#: Longest sub-step for the fast-input states on the fast path, hours (a half-hour step takes four).
GATE_SUBSTEP_H = 0.125

# opcodes of the expression programs, and operand kinds
_OPS = {"copy": 0, "+": 1, "-": 2, "*": 3, "/": 4, "^": 5, "neg": 6, "exp": 7, "ln": 8, "sqrt": 9}
_KV, _INPUT, _STATE, _COL = 0, 1, 2, 3
_LINEAR, _LOGISTIC, _SATURABLE = 0, 1, 2
_SCHEMES = {"linear": _LINEAR, "logistic": _LOGISTIC, "saturable": _SATURABLE}


# ------------------------------------------------------------------ schemes (generic, no model equations)


@njit(cache=True, error_model="numpy")
def _power(x: float, n: float) -> float:
    """x**n, by repeated multiplication when n is a small whole number (Hill coefficients)."""
    if n == 6.0:
        x2 = x * x
        return x2 * x2 * x2
    if n == 2.0:
        return x * x
    if n == 1.0:
        return x
    return float(x**n)


@njit(cache=True, error_model="numpy")
def _apply(op: int, a: float, b: float) -> float:
    """One operation of an expression program on scalars."""
    if op == 3:
        return a * b
    if op == 4:
        return a / b
    if op == 1:
        return a + b
    if op == 2:
        return a - b
    if op == 5:
        return _power(a, b)
    if op == 0:
        return a
    if op == 6:
        return -a
    if op == 7:
        return math.exp(a)
    if op == 8:
        return math.log(a)
    return math.sqrt(a)


@njit(cache=True, error_model="numpy")
def _weights(q: float, h: float) -> tuple[float, float, float]:
    """Weights (e, a, b) of one exact step of x' = p(t) - q x, p linear: x1 = e x0 + a p0 + b (p1 - p0)."""
    z = q * h
    if abs(z) < 0.03:  # Taylor series, truncation below 1e-12 relative (cheaper than exp in the sub-steps)
        z2 = z * z
        z3 = z2 * z
        z4 = z2 * z2
        return (
            1.0 - z + z2 / 2.0 - z3 / 6.0 + z4 / 24.0 - z4 * z / 120.0 + z3 * z3 / 720.0,
            h * (1.0 - z / 2.0 + z2 / 6.0 - z3 / 24.0 + z4 / 120.0 - z4 * z / 720.0),
            h * (0.5 - z / 6.0 + z2 / 24.0 - z3 / 120.0 + z4 / 720.0 - z4 * z / 5040.0),
        )
    e = math.exp(-z)
    return e, -math.expm1(-z) / q, (z + math.expm1(-z)) / (q * z)


@njit(cache=True, error_model="numpy")
def _implicit_duct(c: float, beta: float, p: float, vmax: float, km: float, k: float) -> float:
    """Solve y = c + beta * (p - vmax y / (km + y) - k y) for y >= 0 (a quadratic)."""
    r = c + beta * p
    if r <= 0.0:
        return 0.0
    a2 = 1.0 + beta * k
    b2 = a2 * km - r + beta * vmax
    c2 = r * km
    disc = math.sqrt(b2 * b2 + 4.0 * a2 * c2)
    if b2 > 0.0:
        return 2.0 * c2 / (b2 + disc)
    return (disc - b2) / (2.0 * a2)


@njit(cache=True, error_model="numpy")
def _duct_balance(flux: float, vmax: float, km: float, k: float) -> float:
    """Solve flux = vmax y / (km + y) + k y for y >= 0: k y^2 + (k km + vmax - flux) y - flux km = 0."""
    if flux <= 0.0:
        return 0.0
    b2 = k * km + vmax - flux
    if k == 0.0:
        return flux * km / b2 if b2 > 0.0 else math.inf
    disc = math.sqrt(b2 * b2 + 4.0 * k * flux * km)
    if b2 > 0.0:
        return 2.0 * flux * km / (b2 + disc)
    return (disc - b2) / (2.0 * k)


@njit(cache=True, error_model="numpy")
def _tr_bdf2_duct(e0: float, in0: float, in1: float, h: float, vmax: float, km: float, k: float) -> float:
    """One TR-BDF2 step of e' = in(t) - vmax e / (km + e) - k e, the inflow linear over the step."""
    hg = _GAMMA * h
    in_g = in0 + _GAMMA * (in1 - in0)
    f0 = in0 - vmax * e0 / (km + e0) - k * e0
    eg = _implicit_duct(e0 + 0.5 * hg * f0, 0.5 * hg, in_g, vmax, km, k)
    w = 1.0 / (_GAMMA * (2.0 - _GAMMA))
    c = w * eg - w * (1.0 - _GAMMA) ** 2 * e0
    return _implicit_duct(c, (1.0 - _GAMMA) / (2.0 - _GAMMA) * h, in1, vmax, km, k)


@njit(cache=True, error_model="numpy")
def _logistic(x0: float, a: float, b: float, h: float) -> float:
    """Exact step of x' = a x - b x^2."""
    if x0 <= 0.0:
        return 0.0
    z = a * h
    if z > 30.0:
        e = math.exp(-z)
        return x0 / (e + b * x0 * (1.0 - e) / a)
    growth = math.expm1(z) / z if z != 0.0 else 1.0  # (e^z - 1) / z, exact near z = 0
    return x0 * math.exp(z) / (1.0 + b * x0 * h * growth)


@njit(cache=True, error_model="numpy")
def _gate_cubic(times: np.ndarray, g: np.ndarray, i: int, mean: float) -> tuple[float, float, float, float, float]:
    """The fast input's cubic over step i: (g0, d0, g1, d1, bump).

    End values, end slopes times the step length (from the neighbouring rows), and the weight of
    the bump 6 tau (1 - tau), zero at both ends, that gives the cubic the step's exact ``mean``
    (NaN when the mean is unknown).

    Args:
        times: Grid, hours (n,).
        g: The fast input on the grid (n,).
        i: The step (from ``times[i]`` to ``times[i + 1]``).
        mean: The input's exact mean over the step, or NaN.
    """
    n = times.shape[0]
    h = times[i + 1] - times[i]
    lo = i - 1 if i > 0 else i
    hi = i + 2 if i + 2 < n else i + 1
    g0, g1 = g[i], g[i + 1]
    d0 = d1 = 0.0
    if h > 0.0:
        d0 = (g[i + 1] - g[lo]) / (times[i + 1] - times[lo]) * h
        d1 = (g[hi] - g[i]) / (times[hi] - times[i]) * h
    bump = math.nan if math.isnan(mean) else mean - (0.5 * (g0 + g1) + (d0 - d1) / 12.0)
    return g0, d0, g1, d1, bump


@njit(cache=True, error_model="numpy")
def _gate_value(tau: float, g0: float, d0: float, g1: float, d1: float, bump: float) -> float:
    """The fast input's cubic (see :func:`_gate_cubic`) at fraction ``tau`` of the step."""
    t2, t3 = tau * tau, tau * tau * tau
    hermite = (2 * t3 - 3 * t2 + 1) * g0 + (t3 - 2 * t2 + tau) * d0 + (-2 * t3 + 3 * t2) * g1 + (t3 - t2) * d1
    return hermite + bump * 6.0 * tau * (1.0 - tau)


@njit(cache=True, error_model="numpy")
def _gate_area(tau: float, g0: float, d0: float, g1: float, d1: float, bump: float) -> float:
    """The integral of the fast input's cubic from the step's start to fraction ``tau``, in step lengths."""
    t2, t3 = tau * tau, tau * tau * tau
    t4 = t2 * t2
    return (
        (0.5 * t4 - t3 + tau) * g0
        + (0.25 * t4 - 2.0 * t3 / 3.0 + 0.5 * t2) * d0
        + (t3 - 0.5 * t4) * g1
        + (0.25 * t4 - t3 / 3.0) * d1
        + bump * (3.0 * t2 - 2.0 * t3)
    )


# ------------------------------------------------------------------ expression programs


@njit(cache=True, error_model="numpy")
def _constants(ops: np.ndarray, literals: np.ndarray, params: np.ndarray, size: int) -> np.ndarray:
    """Evaluate the constant program: parameters, then numbers, then computed values."""
    kv = np.empty(size)
    n_p = params.shape[0]
    kv[:n_p] = params
    kv[n_p : n_p + literals.shape[0]] = literals
    for j in range(ops.shape[0]):
        kv[ops[j, 1]] = _apply(ops[j, 0], kv[ops[j, 2]], kv[ops[j, 3]] if ops[j, 3] >= 0 else 0.0)
    return kv


@njit(cache=True, error_model="numpy")
def _operand(
    kind: int, idx: int, kv: np.ndarray, u: np.ndarray, z: np.ndarray, g: np.ndarray, buf: np.ndarray
) -> np.ndarray:
    """One operand's series: a row of the inputs, states or gates, or a constant copied into ``buf``."""
    if kind == _KV:
        buf[:] = kv[idx]
        return buf
    rows = u if kind == _INPUT else z if kind == _STATE else g
    row: np.ndarray = rows[idx]
    return row


@njit(cache=True, error_model="numpy")
def _run_program(
    ops: np.ndarray,
    lo: int,
    hi: int,
    kv: np.ndarray,
    u: np.ndarray,
    z: np.ndarray,
    g: np.ndarray,
    a_buf: np.ndarray,
    b_buf: np.ndarray,
) -> None:
    """Evaluate program instructions ``lo:hi`` over the whole grid, each into its row of ``g``.

    Inputs ``u``, states ``z`` and values ``g`` are stored one series per row (time along the row),
    so each instruction is one contiguous loop (the dispatch on the opcode stays outside it).
    """
    n = g.shape[1]
    for j in range(lo, hi):
        op, dst, ak, ai, bk, bi = ops[j, 0], ops[j, 1], ops[j, 2], ops[j, 3], ops[j, 4], ops[j, 5]
        a = _operand(ak, ai, kv, u, z, g, a_buf)
        c = g[dst]
        if op == 5 and bk == _KV and kv[bi] == 6.0:
            for r in range(n):
                x2 = a[r] * a[r]
                c[r] = x2 * x2 * x2
            continue
        if op == 5 and bk == _KV and kv[bi] == 2.0:
            for r in range(n):
                c[r] = a[r] * a[r]
            continue
        if op == 0:
            for r in range(n):
                c[r] = a[r]
            continue
        if bk < 0:
            for r in range(n):
                c[r] = _apply(op, a[r], 0.0)
            continue
        b = _operand(bk, bi, kv, u, z, g, b_buf)
        if op == 3:
            for r in range(n):
                c[r] = a[r] * b[r]
        elif op == 4:
            for r in range(n):
                c[r] = a[r] / b[r]
        elif op == 1:
            for r in range(n):
                c[r] = a[r] + b[r]
        elif op == 2:
            for r in range(n):
                c[r] = a[r] - b[r]
        else:
            for r in range(n):
                c[r] = _apply(op, a[r], b[r])


# ------------------------------------------------------------------ the kernel


@njit(cache=True, error_model="numpy")
def _sum_terms(
    terms: np.ndarray,
    lo: int,
    hi: int,
    with_source: bool,
    kv: np.ndarray,
    z: np.ndarray,
    g: np.ndarray,
    out: np.ndarray,
) -> None:
    """``out[r] = sum_t c_t g_t[r] s_t[r]`` over terms ``lo:hi`` (constant slot, gate row, source state)."""
    n = out.shape[0]
    out[:] = 0.0
    for t in range(lo, hi):
        c = kv[terms[t, 0]]
        gate = terms[t, 1]
        src = terms[t, 2] if with_source else -1
        if gate >= 0 and src >= 0:
            gr, zr = g[gate], z[src]
            for r in range(n):
                out[r] += c * gr[r] * zr[r]
        elif gate >= 0:
            gr = g[gate]
            for r in range(n):
                out[r] += c * gr[r]
        elif src >= 0:
            zr = z[src]
            for r in range(n):
                out[r] += c * zr[r]
        else:
            for r in range(n):
                out[r] += c


@njit(cache=True, error_model="numpy")
def _march_state(
    k: int,
    times: np.ndarray,
    kv: np.ndarray,
    z: np.ndarray,
    g: np.ndarray,
    lay: np.ndarray,
    pt: np.ndarray,
    qt: np.ndarray,
    p: np.ndarray,
    q: np.ndarray,
) -> None:
    """Integrate state ``k`` over the whole grid (its inputs and upstream states are known).

    ``p`` and ``q`` are work arrays (n,) for its inflow and loss rate on the grid.
    """
    n = times.shape[0]
    x_row = z[k]
    # the inflow on the grid: c * source for the common single ungated term (read in the march), else summed
    lo = lay[k, 1]
    single = lay[k, 2] - lo == 1 and pt[lo, 1] < 0 and pt[lo, 2] >= 0
    if single:
        c_in, inflow = kv[pt[lo, 0]], z[pt[lo, 2]]
    else:
        _sum_terms(pt, lo, lay[k, 2], True, kv, z, g, p)
        c_in, inflow = 1.0, p
    gated = False
    q_const = 0.0
    for t in range(lay[k, 3], lay[k, 4]):
        if qt[t, 1] >= 0:
            gated = True
        q_const += kv[qt[t, 0]]
    if gated:
        _sum_terms(qt, lay[k, 3], lay[k, 4], False, kv, z, g, q)
    scheme = lay[k, 0]
    x = x_row[0]
    p0 = c_in * inflow[0]
    q0 = q[0] if gated else q_const
    h_last = math.nan
    q_last = math.nan
    w0 = w1 = w2 = 0.0
    for r in range(1, n):
        h = times[r] - times[r - 1]
        if h <= 0.0:
            x_row[r] = x
            continue
        p1 = c_in * inflow[r]
        q1 = q[r] if gated else q_const
        if scheme == _LINEAR:
            qm = 0.5 * (q0 + q1) if gated else q_const
            if qm != q_last or h != h_last:
                w0, w1, w2 = _weights(qm, h)
                q_last, h_last = qm, h
            x = w0 * x + w1 * p0 + w2 * (p1 - p0)
        elif scheme == _LOGISTIC:
            x = _logistic(x, -0.5 * (q0 + q1), kv[lay[k, 5]], h)
        else:
            x = _tr_bdf2_duct(x, p0, p1, h, kv[lay[k, 5]], kv[lay[k, 6]], 0.5 * (q0 + q1))
        x_row[r] = x
        p0, q0 = p1, q1


@njit(cache=True, error_model="numpy")
def _march_block(
    times: np.ndarray,
    fu: np.ndarray,
    kv: np.ndarray,
    z: np.ndarray,
    g: np.ndarray,
    lay: np.ndarray,
    pt: np.ndarray,
    qt: np.ndarray,
    gate_mean: np.ndarray,
    substep_h: float,
    fast_gates: np.ndarray,
    b_lo: int,
    b_hi: int,
    po: np.ndarray,
    qo: np.ndarray,
) -> None:
    """Integrate the states that read a fast input (``b_lo:b_hi``) together, in sub-steps.

    Near the ejaculate threshold the caput passes only the small excess of the spermiation flux over
    the duct loss, so the flux's swings within each step are followed with a cubic (Hermite)
    interpolant of each fast input (one per focus class); with its exact mean known, each
    sub-step's loss rate uses the corrected cubic's integral. Inflows from outside the block, and
    loss rates that no fast input gates, are evaluated on the grid first and taken linear over each
    step.

    Args:
        times: Grid, hours (n,).
        fu: The fast inputs on the grid (n_fast, n).
        kv: Constants.
        z: States, one row each (n_states, n); rows ``b_lo:b_hi`` are written.
        g: Gate values, one row each.
        lay: Per state: scheme, inflow terms lo/hi, loss terms lo/hi, b or V slot, K slot.
        pt: Inflow terms: constant slot, gate row, source state.
        qt: Loss terms: constant slot, gate row.
        gate_mean: Each fast input's exact mean over each step (n_fast, n - 1), NaN where unknown; or
            an empty array.
        substep_h: Longest sub-step, hours.
        fast_gates: Gate row that is each fast input itself (n_fast,).
        b_lo: First state of the block.
        b_hi: One past its last state.
        po: Work array (b_hi - b_lo, n): inflows from outside the block.
        qo: Work array (b_hi - b_lo, n): loss rates no fast input gates.
    """
    n = times.shape[0]
    nb = b_hi - b_lo
    nf = fast_gates.shape[0]
    with_mean = gate_mean.shape[0] == nf and gate_mean.shape[1] == n - 1
    po[:] = 0.0
    qo[:] = 0.0
    n_in = 0
    for b in range(nb):
        k = b_lo + b
        for t in range(lay[k, 1], lay[k, 2]):
            gate, src = pt[t, 1], pt[t, 2]
            if _fast_index(fast_gates, gate) >= 0 or b_lo <= src < b_hi:
                n_in += 1
                continue
            c = kv[pt[t, 0]]
            for r in range(n):
                v = c
                if gate >= 0:
                    v *= g[gate, r]
                if src >= 0:
                    v *= z[src, r]
                po[b, r] += v
        for t in range(lay[k, 3], lay[k, 4]):
            gate = qt[t, 1]
            if _fast_index(fast_gates, gate) >= 0:
                continue
            c = kv[qt[t, 0]]
            for r in range(n):
                qo[b, r] += c * g[gate, r] if gate >= 0 else c
    # the terms evaluated in every sub-step: gated by a fast input, or between the block's states
    in_ptr = np.zeros(nb + 1, dtype=np.int64)
    in_c = np.zeros(max(n_in, 1))
    in_fast = np.full(max(n_in, 1), -1, dtype=np.int64)
    in_src = np.full(max(n_in, 1), -1, dtype=np.int64)
    qf = np.zeros(nb)
    qf_at = np.zeros(nb, dtype=np.int64)  # the fast input that gates the state's loss (0 if none: qf = 0)
    sat = np.zeros(nb, dtype=np.bool_)
    vmax = np.zeros(nb)
    km = np.zeros(nb)
    m_in = 0
    for b in range(nb):
        k = b_lo + b
        for t in range(lay[k, 1], lay[k, 2]):
            j = _fast_index(fast_gates, pt[t, 1])
            if j >= 0 or b_lo <= pt[t, 2] < b_hi:
                in_c[m_in] = kv[pt[t, 0]]
                in_fast[m_in] = j
                in_src[m_in] = pt[t, 2] - b_lo if pt[t, 2] >= 0 else -1
                m_in += 1
        in_ptr[b + 1] = m_in
        for t in range(lay[k, 3], lay[k, 4]):
            j = _fast_index(fast_gates, qt[t, 1])
            if j >= 0:
                qf[b] += kv[qt[t, 0]]
                qf_at[b] = j
        sat[b] = lay[k, 0] == _SATURABLE
        if sat[b]:
            vmax[b], km[b] = kv[lay[k, 5]], kv[lay[k, 6]]
    cur_a = np.zeros(nb)
    cur_b = np.zeros(nb)
    wq = np.full(nb, math.nan)
    wh = np.full(nb, math.nan)
    w0 = np.zeros(nb)
    w1 = np.zeros(nb)
    w2 = np.zeros(nb)
    # each fast input's cubic over the step, its value at the sub-step's ends and its mean over it
    c0 = np.zeros(nf)
    c1 = np.zeros(nf)
    c2 = np.zeros(nf)
    c3 = np.zeros(nf)
    bump = np.zeros(nf)
    bv = np.zeros(nf)
    fa = np.zeros(nf)
    fb = np.zeros(nf)
    area_a = np.zeros(nf)
    mean = np.full(nf, math.nan)
    # the cubic's basis at the sub-step ends, for the current number of sub-steps
    m_last = -1
    basis = np.zeros((1, 10))
    for i in range(n - 1):
        r = i + 1
        h = times[r] - times[i]
        if h <= 0.0:
            for b in range(nb):
                z[b_lo + b, r] = z[b_lo + b, i]
            continue
        has_mean = True
        steady_gate = True
        for j in range(nf):
            c0[j], c1[j], c2[j], c3[j], bump[j] = _gate_cubic(
                times, fu[j], i, gate_mean[j, i] if with_mean else math.nan
            )
            has_mean = has_mean and not math.isnan(bump[j])
            steady_gate = steady_gate and c0[j] == c2[j] and c1[j] == 0.0 and c3[j] == 0.0
        if has_mean:
            for j in range(nf):
                steady_gate = steady_gate and bump[j] == 0.0
        m = 1 if steady_gate else int(math.ceil(h / substep_h - 1e-9))
        if m != m_last:
            basis = np.empty((m, 10))
            for s in range(m):
                tau = (s + 1.0) / m
                t2, t3 = tau * tau, tau * tau * tau
                t4 = t2 * t2
                basis[s, 0] = 2 * t3 - 3 * t2 + 1
                basis[s, 1] = t3 - 2 * t2 + tau
                basis[s, 2] = -2 * t3 + 3 * t2
                basis[s, 3] = t3 - t2
                basis[s, 4] = 6.0 * tau * (1.0 - tau)
                basis[s, 5] = 0.5 * t4 - t3 + tau
                basis[s, 6] = 0.25 * t4 - 2.0 * t3 / 3.0 + 0.5 * t2
                basis[s, 7] = t3 - 0.5 * t4
                basis[s, 8] = 0.25 * t4 - t3 / 3.0
                basis[s, 9] = 3.0 * t2 - 2.0 * t3
            m_last = m
        hs = h / m
        for j in range(nf):
            bv[j] = bump[j] if has_mean else 0.0
            fa[j] = fu[j, i]
            area_a[j] = 0.0
        for b in range(nb):
            cur_b[b] = z[b_lo + b, i]
        for s in range(m):
            tau_a = s / m
            tau = (s + 1.0) / m
            for j in range(nf):
                if s + 1 < m:
                    fb[j] = (
                        basis[s, 0] * c0[j] + basis[s, 1] * c1[j] + basis[s, 2] * c2[j] + basis[s, 3] * c3[j]
                        + bv[j] * basis[s, 4]
                    )  # fmt: skip
                else:
                    fb[j] = fu[j, r]
                if has_mean:
                    area_b = (
                        basis[s, 5] * c0[j] + basis[s, 6] * c1[j] + basis[s, 7] * c2[j] + basis[s, 8] * c3[j]
                        + bump[j] * basis[s, 9]
                    )  # fmt: skip
                    mean[j] = (area_b - area_a[j]) * m
                    area_a[j] = area_b
            for b in range(nb):
                cur_a[b] = cur_b[b]
            for b in range(nb):
                po0, qo0 = po[b, i], qo[b, i]
                dpo, dqo = po[b, r] - po0, qo[b, r] - qo0
                pa = po0 + tau_a * dpo if s > 0 else po0
                pb = po0 + tau * dpo
                for t in range(in_ptr[b], in_ptr[b + 1]):
                    va = in_c[t]
                    vb = in_c[t]
                    j = in_fast[t]
                    if j >= 0:
                        va *= fa[j]
                        vb *= fb[j]
                    if in_src[t] >= 0:
                        va *= cur_a[in_src[t]]
                        vb *= cur_b[in_src[t]]
                    pa += va
                    pb += vb
                qoa = qo0 + tau_a * dqo
                qob = qo0 + tau * dqo
                # the loss rate's mean over the sub-step: the fast input's exact one where known
                j = qf_at[b]
                if has_mean:
                    qm = qf[b] * mean[j] + 0.5 * (qoa + qob)
                else:
                    qm = 0.5 * ((qf[b] * fa[j] + qoa) + (qf[b] * fb[j] + qob))
                if sat[b]:
                    cur_b[b] = _tr_bdf2_duct(cur_a[b], pa, pb, hs, vmax[b], km[b], qm)
                else:
                    if qm != wq[b] or hs != wh[b]:
                        w0[b], w1[b], w2[b] = _weights(qm, hs)
                        wq[b], wh[b] = qm, hs
                    cur_b[b] = w0[b] * cur_a[b] + w1[b] * pa + w2[b] * (pb - pa)
            for j in range(nf):
                fa[j] = fb[j]
        for b in range(nb):
            z[b_lo + b, r] = cur_b[b]


@njit(cache=True, error_model="numpy")
def _fast_index(fast_gates: np.ndarray, gate: int) -> int:
    """Which fast input a gate row is (-1 if none)."""
    if gate < 0:
        return -1
    for j in range(fast_gates.shape[0]):
        if fast_gates[j] == gate:
            return j
    return -1


@njit(cache=True, error_model="numpy")
def _march(
    times: np.ndarray,
    u: np.ndarray,
    kv: np.ndarray,
    z: np.ndarray,
    g: np.ndarray,
    work: np.ndarray,
    k_lo: int,
    k_hi: int,
    lay: np.ndarray,
    pt: np.ndarray,
    qt: np.ndarray,
    gate_mean: np.ndarray,
    substep_h: float,
    fast: np.ndarray,
    fast_gates: np.ndarray,
    b_lo: int,
    b_hi: int,
) -> None:
    """Integrate states ``k_lo:k_hi`` in cascade order, each over the whole grid (column 0 holds the start).

    ``work`` is a work array (4 + 2 (b_hi - b_lo), n).
    """
    nb = b_hi - b_lo
    for k in range(k_lo, k_hi):
        if b_lo <= k < b_hi:
            if k == b_lo:
                fu = np.empty((fast.shape[0], times.shape[0]))
                for j in range(fast.shape[0]):
                    fu[j, :] = u[fast[j]]
                _march_block(
                    times, fu, kv, z, g, lay, pt, qt, gate_mean, substep_h, fast_gates, b_lo, b_hi,
                    work[4 : 4 + nb], work[4 + nb : 4 + 2 * nb],
                )  # fmt: skip
            continue
        _march_state(k, times, kv, z, g, lay, pt, qt, work[2], work[3])


@njit(cache=True, error_model="numpy")
def _integrate(
    times: np.ndarray,
    u: np.ndarray,
    kv: np.ndarray,
    z: np.ndarray,
    g: np.ndarray,
    work: np.ndarray,
    gate_ops: np.ndarray,
    n_input_ops: int,
    lay: np.ndarray,
    pt: np.ndarray,
    qt: np.ndarray,
    n_head: int,
    upstream: np.ndarray,
    gate_mean: np.ndarray,
    substep_h: float,
    fast: np.ndarray,
    fast_gates: np.ndarray,
    b_lo: int,
    b_hi: int,
) -> None:
    """Integrate the germ line: input gates, the head (or a copy of ``upstream``), head gates, the chain.

    ``g`` (gate rows, n) and ``work`` (4 + 2 block states, n) are work arrays.
    """
    _run_program(gate_ops, 0, n_input_ops, kv, u, z, g, work[0], work[1])
    if upstream.shape[0] > 0:  # the head recorded by the core; a row of NaN is a head state it does not carry
        for k in range(n_head):
            if np.isnan(upstream[k, 0]):
                _march(
                    times, u, kv, z, g, work, k, k + 1, lay, pt, qt, gate_mean, substep_h, fast, fast_gates, b_lo, b_hi
                )
            else:
                z[k, :] = upstream[k, :]
    else:
        _march(times, u, kv, z, g, work, 0, n_head, lay, pt, qt, gate_mean, substep_h, fast, fast_gates, b_lo, b_hi)
    _run_program(gate_ops, n_input_ops, gate_ops.shape[0], kv, u, z, g, work[0], work[1])
    _march(
        times, u, kv, z, g, work, n_head, z.shape[0], lay, pt, qt, gate_mean, substep_h, fast, fast_gates, b_lo, b_hi
    )


@njit(cache=True, error_model="numpy")
def _steady(
    u: np.ndarray,
    kv: np.ndarray,
    z: np.ndarray,
    g: np.ndarray,
    gate_ops: np.ndarray,
    n_input_ops: int,
    lay: np.ndarray,
    pt: np.ndarray,
    qt: np.ndarray,
    n_head: int,
    start: np.ndarray,
) -> None:
    """Steady states (one column) for constant signals, in cascade order.

    Inflow over loss rate; a logistic state's stable point (zero if the start has none or the pool
    shrinks); a saturable state's balance (a quadratic).
    """
    a_buf = np.empty(1)
    b_buf = np.empty(1)
    p = np.empty(1)
    q = np.empty(1)
    _run_program(gate_ops, 0, n_input_ops, kv, u, z, g, a_buf, b_buf)
    for k in range(z.shape[0]):
        if k == n_head:
            _run_program(gate_ops, n_input_ops, gate_ops.shape[0], kv, u, z, g, a_buf, b_buf)
        _sum_terms(pt, lay[k, 1], lay[k, 2], True, kv, z, g, p)
        _sum_terms(qt, lay[k, 3], lay[k, 4], False, kv, z, g, q)
        scheme = lay[k, 0]
        if scheme == _LOGISTIC:
            a = -q[0]
            z[k, 0] = a / kv[lay[k, 5]] if (start[k] > 0.0 and a > 0.0) else 0.0
        elif scheme == _SATURABLE:
            z[k, 0] = _duct_balance(p[0], kv[lay[k, 5]], kv[lay[k, 6]], q[0])
        else:
            z[k, 0] = p[0] / q[0]


@njit(cache=True, error_model="numpy")
def _refine(
    times: np.ndarray,
    inputs: np.ndarray,
    upstream: np.ndarray,
    gate_mean: np.ndarray,
    max_step_h: float,
    fast: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """See :meth:`GermlineKernel.refine_driven` (rows are times here; ``gate_mean`` is (n_fast, n - 1))."""
    n = times.shape[0]
    nf = fast.shape[0]
    counts = np.ones(max(n - 1, 0), dtype=np.int64)
    for i in range(n - 1):
        h = times[i + 1] - times[i]
        if h > max_step_h:
            counts[i] = int(math.ceil(h / max_step_h - 1e-9))
    total = int(counts.sum()) + 1
    ft = np.empty(total)
    fin = np.empty((total, inputs.shape[1]))
    fup = np.empty((total, upstream.shape[1]))
    fgm = np.full((nf, total - 1), math.nan)
    cubic = np.zeros((nf, 5))
    fu = np.empty((nf, n))
    for f in range(nf):
        fu[f, :] = inputs[:, fast[f]]
    r = 0
    for i in range(n - 1):
        h = times[i + 1] - times[i]
        m = counts[i]
        for f in range(nf):
            g0, d0, g1, d1, bump = _gate_cubic(times, fu[f], i, gate_mean[f, i])
            cubic[f, 0], cubic[f, 1], cubic[f, 2], cubic[f, 3] = g0, d0, g1, d1
            cubic[f, 4] = 0.0 if math.isnan(bump) else bump
        area_a = np.zeros(nf)
        for j in range(m):
            tau = j / m
            ft[r] = times[i] + tau * h
            for c in range(inputs.shape[1]):
                fin[r, c] = inputs[i, c] + tau * (inputs[i + 1, c] - inputs[i, c])
            for c in range(upstream.shape[1]):
                fup[r, c] = upstream[i, c] + tau * (upstream[i + 1, c] - upstream[i, c])
            for f in range(nf):
                g0, d0, g1, d1, bump = cubic[f, 0], cubic[f, 1], cubic[f, 2], cubic[f, 3], cubic[f, 4]
                fin[r, fast[f]] = _gate_value(tau, g0, d0, g1, d1, bump)
                area_b = _gate_area((j + 1.0) / m, g0, d0, g1, d1, bump)
                fgm[f, r] = (area_b - area_a[f]) * m if m > 1 or not math.isnan(gate_mean[f, i]) else math.nan
                area_a[f] = area_b
            r += 1
    ft[r] = times[n - 1]
    fin[r] = inputs[n - 1]
    fup[r] = upstream[n - 1]
    return ft, fin, fup, fgm


# ------------------------------------------------------------------ compiling a table

#: A constant's provisional slot: ("p", parameter), ("l", number) or ("c", computed value).
_Slot = tuple[str, int]


class _Builder:
    """Compiles expressions to programs with shared subexpressions; constants go to the constant program."""

    def __init__(self, table: GermlineTable) -> None:
        self.params = {p: i for i, p in enumerate(table.parameters)}
        self.inputs = {u: i for i, u in enumerate(table.inputs)}
        self.states = {s: i for i, s in enumerate(table.species)}
        self.literals: list[float] = []
        self.const_ops: list[tuple[int, _Slot, _Slot, _Slot | None]] = []
        self.const_memo: dict[Expr, _Slot] = {}
        self.row_ops: list[tuple[int, int, int, Any, int, Any]] = []
        self.row_memo: dict[Expr, tuple[int, Any]] = {}
        self.n_cols = 0

    def const(self, e: Expr) -> _Slot:
        """Provisional slot of a constant expression."""
        if e in self.const_memo:
            return self.const_memo[e]
        if e[0] == "param":
            slot: _Slot = ("p", self.params[str(e[1])])
        elif e[0] == "const":
            self.literals.append(float(e[1]))  # type: ignore[arg-type]
            slot = ("l", len(self.literals) - 1)
        else:
            args = [self.const(a) for a in e[1:]]  # type: ignore[arg-type]
            slot = ("c", len(self.const_ops))
            self.const_ops.append((_OPS[str(e[0])], slot, args[0], args[1] if len(args) > 1 else None))
        self.const_memo[e] = slot
        return slot

    def row(self, e: Expr, dst: int = -1) -> tuple[int, Any]:
        """Operand (kind, index) of an expression over the grid, adding instructions as needed.

        With ``dst`` the value is written to that row (copied if it is an input or a state).
        """
        if dst < 0 and e in self.row_memo:
            return self.row_memo[e]
        if is_constant(e) or e[0] in ("input", "state"):
            if is_constant(e):
                operand: tuple[int, Any] = (_KV, self.const(e))
            elif e[0] == "input":
                operand = (_INPUT, self.inputs[str(e[1])])
            else:
                operand = (_STATE, self.states[str(e[1])])
            if dst < 0:
                return operand
            args = [operand]
            op = _OPS["copy"]
        else:
            args = [self.row(a) for a in e[1:]]  # type: ignore[arg-type]
            op = _OPS[str(e[0])]
        if dst < 0:
            dst = self.n_cols
            self.n_cols += 1
        b = args[1] if len(args) > 1 else (-1, -1)
        self.row_ops.append((op, dst, args[0][0], args[0][1], b[0], b[1]))
        self.row_memo[e] = (_COL, dst)
        return (_COL, dst)

    def slot(self, s: _Slot) -> int:
        """Final index of a provisional slot in the constant vector."""
        base = {"p": 0, "l": len(self.params), "c": len(self.params) + len(self.literals)}
        return base[s[0]] + s[1]

    def constants(self) -> tuple[np.ndarray, np.ndarray, int]:
        """The constant program (op, dst, a, b), its numbers, and the constant vector's size."""
        ops = [
            (op, self.slot(d), self.slot(a), self.slot(b) if b is not None else -1) for op, d, a, b in self.const_ops
        ]
        size = len(self.params) + len(self.literals) + len(self.const_ops)
        return np.array(ops, dtype=np.int64).reshape(-1, 4), np.array(self.literals, dtype=np.float64), size

    def rows(self, ops: list[tuple[int, int, int, Any, int, Any]]) -> np.ndarray:
        """A grid program with constant operands at their final slots."""
        final = [
            (op, dst, ak, self.slot(ai) if ak == _KV else ai, bk, self.slot(bi) if bk == _KV else bi)
            for op, dst, ak, ai, bk, bi in ops
        ]
        return np.array(final, dtype=np.int64).reshape(-1, 6)


@dataclass(frozen=True)
class Program:
    """A table compiled for the numba kernel.

    Attributes:
        const_ops: Constant program (op, dst, a, b) over the constant vector.
        literals: Numbers of the constant vector (after the parameters).
        n_kv: Size of the constant vector.
        gate_ops: Grid program of the gates (op, dst, a kind, a, b kind, b); the first
            ``n_input_ops`` instructions read inputs only, the rest head states too.
        n_input_ops: See ``gate_ops``.
        n_cols: Rows of the gate matrix (gates, then intermediate values).
        obs_ops: Grid program of the observables.
        obs_cols: Row of each observable.
        n_obs_cols: Rows of the observables' matrix.
        lay: Per state: scheme, inflow terms lo/hi, loss terms lo/hi, b or V slot, K slot.
        pt: Inflow terms: constant slot, gate row, source state.
        qt: Loss terms: constant slot, gate row.
    """

    const_ops: np.ndarray
    literals: np.ndarray
    n_kv: int
    gate_ops: np.ndarray
    n_input_ops: int
    n_cols: int
    obs_ops: np.ndarray
    obs_cols: dict[str, int]
    n_obs_cols: int
    lay: np.ndarray
    pt: np.ndarray
    qt: np.ndarray


def compile_table(table: GermlineTable) -> Program:
    """Compile a germ-line table into arrays and programs for the kernel."""
    build = _Builder(table)
    head = set(table.head)
    n_gates = len(table.gates)
    build.n_cols = n_gates
    reads_head = [bool(names_in(g, "state") & head) for g in table.gates]
    for g in range(n_gates):
        if not reads_head[g]:
            build.row(table.gates[g], dst=g)
    n_input_ops = len(build.row_ops)
    for g in range(n_gates):
        if reads_head[g]:
            build.row(table.gates[g], dst=g)
    gate_ops, n_cols = list(build.row_ops), build.n_cols
    lay_rows: list[list[Any]] = []
    pt: list[tuple[_Slot, int, int]] = []
    qt: list[tuple[_Slot, int]] = []
    for k in range(len(table.species)):
        mine = [t for t in table.terms if t.state == k]
        row: list[Any] = [_SCHEMES[table.schemes[k]], len(pt)]
        pt += [(build.const(t.const), t.gate, t.source) for t in mine if t.kind == "p"]
        row += [len(pt), len(qt)]
        qt += [(build.const(t.const), t.gate) for t in mine if t.kind == "q"]
        row += [len(qt), None, None]
        for t in mine:
            if t.kind in ("b", "sat"):
                row[5] = build.const(t.const)
            if t.kind == "sat" and t.km is not None:
                row[6] = build.const(t.km)
        lay_rows.append(row)
    build.row_ops, build.row_memo, build.n_cols = [], {}, len(table.observables)
    obs_cols: dict[str, int] = {}
    for j, (name, e) in enumerate(table.observables.items()):
        build.row(e, dst=j)
        obs_cols[name] = j
    obs_ops, n_obs_cols = list(build.row_ops), build.n_cols
    const_ops, literals, n_kv = build.constants()
    lay = np.array(
        [[v if i < 5 else (build.slot(v) if v is not None else -1) for i, v in enumerate(r)] for r in lay_rows],
        dtype=np.int64,
    ).reshape(-1, 7)
    return Program(
        const_ops=const_ops,
        literals=literals,
        n_kv=n_kv,
        gate_ops=build.rows(gate_ops),
        n_input_ops=n_input_ops,
        n_cols=max(n_cols, 1),
        obs_ops=build.rows(obs_ops),
        obs_cols=obs_cols,
        n_obs_cols=max(n_obs_cols, 1),
        lay=lay,
        pt=np.array([(build.slot(c), g, s) for c, g, s in pt], dtype=np.int64).reshape(-1, 3),
        qt=np.array([(build.slot(c), g) for c, g in qt], dtype=np.int64).reshape(-1, 2),
    )


def _f64(a: Any) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float64)


#: Work buffers larger than this (bytes) are not kept between runs.
_KEEP_BYTES = 64 * 2**20
_WORK = threading.local()


def _workspace(rows: int, n: int) -> np.ndarray:
    """Return a C-contiguous (rows, n) work array, reused between runs on the same thread.

    Fresh pages cost more than the kernel's arithmetic on them, so the work arrays of one run are
    taken from one buffer per thread, kept while it is at most ``_KEEP_BYTES``.
    """
    size = rows * n
    buffer: np.ndarray | None = getattr(_WORK, "buffer", None)
    if buffer is None or buffer.size < size:
        buffer = np.empty(size)
        if buffer.nbytes <= _KEEP_BYTES:
            _WORK.buffer = buffer
    return buffer[:size].reshape(rows, n)


class GermlineKernel:
    """The compiled germ line of one model: its table, programs and integrators.

    Attributes:
        table: The germ-line table read from the SBML.
        program: The table compiled for the kernel.
        species: Integrated states, head first (the order of every state vector).
        inputs: Core signals read, in the order of the input columns.
        upstream: The head states.
        n_states: Number of integrated states.
    """

    def __init__(self, table: GermlineTable) -> None:
        """Compile a table (no numba compilation happens here: the kernel is generic)."""
        self.table = table
        self.program = compile_table(table)
        self.species = table.species
        self.inputs = table.inputs
        self.upstream = table.head
        self.n_states = len(table.species)
        #: Indices of the fast inputs among :attr:`inputs` (one per focus class).
        self.fast = np.array(table.fast_inputs, dtype=np.int64)
        #: The gate row that is each fast input itself.
        self._fast_gates = np.array(
            [table.gates.index(("input", table.inputs[f])) for f in table.fast_inputs], dtype=np.int64
        )
        self._block = (table.substepped[0], table.substepped[-1] + 1) if table.substepped else (0, 0)

    def parameter_vector(self, values: dict[str, float]) -> np.ndarray:
        """Return the parameter vector in the table's order from a mapping of model values."""
        return np.array([float(values[name]) for name in self.table.parameters], dtype=np.float64)

    def constants(self, params: np.ndarray) -> np.ndarray:
        """Evaluate the rate constants and every other constant of the table."""
        p = self.program
        return _constants(p.const_ops, p.literals, _f64(params), p.n_kv)

    def integrate(self, times: np.ndarray, inputs: np.ndarray, params: np.ndarray, x0: np.ndarray) -> np.ndarray:
        """Integrate every state over a time grid.

        Args:
            times: Increasing grid times, hours (n,).
            inputs: Core signals at the grid times, columns as :attr:`inputs` (n, n_inputs).
            params: Parameter vector (:meth:`parameter_vector`).
            x0: States at ``times[0]`` in :attr:`species` order.

        Returns:
            The states at every grid time (n, n_states), a transposed view of state-major storage.
        """
        return self.integrate_driven(
            times, inputs, params, x0, np.empty((0, len(self.upstream))), np.empty((0, 0)), GATE_SUBSTEP_H
        )

    def integrate_driven(
        self,
        times: np.ndarray,
        inputs: np.ndarray,
        params: np.ndarray,
        x0: np.ndarray,
        upstream: np.ndarray,
        gate_mean: np.ndarray,
        gate_substep_h: float,
    ) -> np.ndarray:
        """Integrate the cascade, optionally taking its head and the fast input's means from the core.

        Args:
            times: Increasing grid times, hours (n,).
            inputs: Core signals at the grid times (n, n_inputs).
            params: Parameter vector (:meth:`parameter_vector`).
            x0: States at ``times[0]``.
            upstream: The head states recorded by a core that carries them (n, n_head), used
                instead of integrating them here (a column of NaN: a head state the core does not
                carry, integrated here from the inputs); or an empty (0, n_head) array.
            gate_mean: Each fast input's exact mean over each grid step (n_fast, n - 1), from the
                integrals the core carries (NaN where unknown); (n - 1,) with one fast input; or an
                empty array. Each interpolant inside a step is corrected to have this mean.
            gate_substep_h: Longest sub-step of the states that read a fast input, hours.

        Returns:
            The states at every grid time (n, n_states), a transposed view of state-major storage.
        """
        p = self.program
        kv = self.constants(params)
        t = _f64(times)
        n = t.shape[0]
        inputs = np.asarray(inputs, dtype=np.float64)
        driven = upstream.shape[0] == n
        n_in, n_up, nb = inputs.shape[1], len(self.upstream) if driven else 0, self._block[1] - self._block[0]
        # every work array in one thread-local buffer, one series per row (reused: no fresh pages per run)
        a, b, c = p.n_cols, p.n_cols + 4 + 2 * nb, p.n_cols + 4 + 2 * nb + n_in
        w = _workspace(c + n_up, n)
        g, work, u, up = w[:a], w[a:b], w[b:c], w[c:]
        np.copyto(u, inputs.T)
        if driven:
            np.copyto(up, np.asarray(upstream, dtype=np.float64).T)
        z = np.empty((self.n_states, n))
        z[:, 0] = x0
        _integrate(
            t, u, kv, z, g, work, p.gate_ops, p.n_input_ops, p.lay, p.pt, p.qt, len(self.upstream), up,
            self._means(gate_mean), float(gate_substep_h), self.fast, self._fast_gates, *self._block,
        )  # fmt: skip
        return z.T

    def steady_state(self, inputs: np.ndarray, params: np.ndarray, x0: np.ndarray) -> np.ndarray:
        """Return the cascade's steady state for constant core signals, starting from ``x0``.

        A logistic state goes to its stable point (zero if ``x0`` has none, or if it shrinks);
        every linear state is inflow over loss rate, and a saturable one's balance a quadratic.
        """
        p = self.program
        kv = self.constants(params)
        u = _f64(np.asarray(inputs, dtype=np.float64).reshape(-1, 1))
        start = _f64(x0)
        z = start.reshape(-1, 1).copy()
        g = np.empty((p.n_cols, 1))
        _steady(u, kv, z, g, p.gate_ops, p.n_input_ops, p.lay, p.pt, p.qt, len(self.upstream), start)
        return z[:, 0]

    def refine_driven(
        self, times: np.ndarray, inputs: np.ndarray, upstream: np.ndarray, gate_mean: np.ndarray, max_step_h: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Split every grid step into equal sub-steps of at most ``max_step_h``, for :meth:`integrate_driven`.

        The slow signals (every input but the fast ones, the head states) are interpolated
        linearly. Each fast input follows the same cubic that :meth:`integrate_driven` uses inside
        a step (slopes from the neighbouring rows), corrected to the step's exact mean where
        ``gate_mean`` (n_fast, n - 1), or (n - 1,) with one fast input, gives one; each sub-step's
        mean is that interpolant's exact integral over it.

        Returns:
            The finer times, inputs, upstream states and gate means (in the shape given).
        """
        means = np.asarray(gate_mean, dtype=np.float64)
        ft, fin, fup, fgm = _refine(
            _f64(times), _f64(inputs), _f64(upstream), self._means(means), float(max_step_h), self.fast
        )
        return ft, fin, fup, (fgm[0] if means.ndim == 1 and fgm.shape[0] == 1 else fgm)

    def _means(self, gate_mean: np.ndarray) -> np.ndarray:
        """Gate means as (n_fast, steps): a 1-D array is the one fast input's."""
        means = np.asarray(gate_mean, dtype=np.float64)
        if means.ndim == 1:
            means = means.reshape(1, -1) if means.size else np.empty((0, 0))
        return _f64(means)

    def observables(self, states: np.ndarray, inputs: np.ndarray, params: np.ndarray) -> dict[str, np.ndarray]:
        """Return every model observable that reads germ-line states, by id, at the given rows.

        Args:
            states: States (m, n_states).
            inputs: Core signals at the same rows (m, n_inputs).
            params: Parameter vector.
        """
        p = self.program
        kv = self.constants(params)
        z = _f64(np.asarray(states, dtype=np.float64).T)
        u = _f64(np.asarray(inputs, dtype=np.float64).T)
        m = z.shape[1]
        out = np.empty((p.n_obs_cols, m))
        _run_program(p.obs_ops, 0, p.obs_ops.shape[0], kv, u, z, out, np.empty(m), np.empty(m))
        return {name: out[j].copy() for name, j in p.obs_cols.items()}


@lru_cache(maxsize=8)
def kernel_for(sbml: str) -> GermlineKernel:
    """Return the compiled germ line of a model (cached by SBML text).

    Raises:
        ModelBuildError: If the model's germ line is outside the kernel's form.
    """
    return GermlineKernel(read_germline(sbml))


def default_kernel() -> GermlineKernel:
    """Return the compiled germ line of the shipped model."""
    return kernel_for(default_sbml())


_ATTRIBUTES: dict[str, Callable[[GermlineKernel], Any]] = {
    "SPECIES": lambda k: k.species,
    "INPUTS": lambda k: k.inputs,
    "UPSTREAM": lambda k: k.upstream,
    "N_STATES": lambda k: k.n_states,
    "DERIVED_SPECIES": lambda k: (*k.table.derived, *k.table.ledgers),
    "parameter_vector": lambda k: k.parameter_vector,
    "integrate": lambda k: k.integrate,
    "integrate_driven": lambda k: k.integrate_driven,
    "steady_state": lambda k: k.steady_state,
    "refine_driven": lambda k: k.refine_driven,
}


def __getattr__(name: str) -> Any:
    """The shipped model's kernel attributes, read on first use (see the module docstring)."""
    if name in _ATTRIBUTES:
        return _ATTRIBUTES[name](default_kernel())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
