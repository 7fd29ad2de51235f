"""The fast path's second half: the RA-driven states integrated in compiled code from recorded RA signals.

Everything downstream of RAR occupancy in ``models/ra_testis.ant`` (4-oxo-isotretinoin, STRA8, the
tight junctions, and the germ-cell chain from stem cells to the cauda) feeds nothing back to the
retinoid core. Given the core's signals on a time grid (plasma 13-cis-RA, RAR occupancy, RA signal
and the spermiation gate), these 43 states form a feed-forward cascade of scalar equations
``x' = p(t) - q(t) x`` (plus the stem-cell logistic and the saturable duct loss), which this module
integrates stage by stage on the grid:

- linear stages: exponential integration with the input ``p`` linear over each step and the rate
  ``q`` linear over each step (exact for a constant rate and linear input; second order otherwise);
- stem cells: the logistic's closed-form solution over each step;
- the first epididymal stage (saturable duct loss, stiff when nearly empty): TR-BDF2, whose two
  implicit stages are quadratics solved in closed form.

The equations repeat the model's rate laws. :func:`ra_model.engines.fastpath.check_germline_equations`
compares them with libroadrunner's rates of change at random states, and the fast engine refuses to
run if they differ, so an edit to the model cannot silently diverge from this module.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

#: Species integrated here, in cascade order (index = position in the state vector).
SPECIES: tuple[str, ...] = (
    "Oxo",
    "STRA8",
    "TJ_open",
    "SSC",
    *(f"SG{i}" for i in range(1, 10)),
    "PL",
    *(f"SC{i}" for i in range(1, 13)),
    *(f"RS{i}" for i in range(1, 13)),
    "ES",
    "EP1",
    "EP2",
    "EP3",
    "CAUDA",
)
#: The head of the cascade, driven by fast-varying core signals (plasma isotretinoin, RAR
#: occupancy, RA signal): a core that carries them (the split exact path's) records them instead.
UPSTREAM: tuple[str, ...] = ("Oxo", "STRA8", "TJ_open")
#: Species that the fast path drops from the retinoid core without integrating here: the sealed
#: junctions (the junction total is conserved, so sealed = total - open) and the mass-balance ledger.
DERIVED_SPECIES: tuple[str, ...] = ("TJ_sealed", "Eliminated")
#: Core signals the cascade needs, one column each in the input array, in this order.
INPUTS: tuple[str, ...] = ("Iso_c", "RAR_occupancy", "RA_signal", "spermiation_gate")
#: Model parameters the cascade reads, in the order of the parameter vector.
PARAMETERS: tuple[str, ...] = (
    "f_oxo",
    "CL_iso",
    "plasma_c",
    "CL_oxo",
    "oxo_space",
    "k_stra8_syn",
    "K_stra8_occ",
    "n_stra8",
    "k_stra8_deg",
    "STRA8_ref",
    "k_tj_open",
    "K_btb_ra",
    "n_btb",
    "k_tj_seal",
    "r_ssc",
    "stem_niche",
    "k_diff",
    "K_diff_stra8",
    "n_diff",
    "k_sg",
    "k_cross",
    "K_meiosis_stra8",
    "n_meiosis",
    "k_pl_death",
    "k_sc",
    "k_sc_loss",
    "meiotic_competence",
    "k_rs",
    "k_spermiation",
    "k_phago",
    "Vmax_duct_loss",
    "K_duct_loss",
    "k_ep",
    "k_cauda",
    "TJ_total",
)
_P = {name: i for i, name in enumerate(PARAMETERS)}
_S = {name: i for i, name in enumerate(SPECIES)}
N_STATES = len(SPECIES)

# parameter positions, as module constants numba can fold
(
    F_OXO,
    CL_ISO,
    PLASMA_C,
    CL_OXO,
    OXO_SPACE,
    K_STRA8_SYN,
    K_STRA8_OCC,
    N_STRA8,
    K_STRA8_DEG,
    STRA8_REF,
    K_TJ_OPEN,
    K_BTB_RA,
    N_BTB,
    K_TJ_SEAL,
    R_SSC,
    STEM_NICHE,
    K_DIFF,
    K_DIFF_STRA8,
    N_DIFF,
    K_SG,
    K_CROSS,
    K_MEIOSIS_STRA8,
    N_MEIOSIS,
    K_PL_DEATH,
    K_SC,
    K_SC_LOSS,
    MEIOTIC_COMPETENCE,
    K_RS,
    K_SPERMIATION,
    K_PHAGO,
    VMAX_DUCT,
    K_DUCT,
    K_EP,
    K_CAUDA,
    TJ_TOTAL,
) = range(len(PARAMETERS))
I_OXO, I_STRA8, I_TJO, I_SSC, I_SG1 = 0, 1, 2, 3, 4
#: Column of the spermiation gate among the inputs.
GATE = INPUTS.index("spermiation_gate")
I_PL = _S["PL"]
I_SC1 = _S["SC1"]
I_RS1 = _S["RS1"]
I_ES, I_EP1, I_EP2, I_EP3, I_CAUDA = (_S[s] for s in ("ES", "EP1", "EP2", "EP3", "CAUDA"))

_GAMMA = 2.0 - math.sqrt(2.0)
#: Longest sub-step for mature spermatids and the caput, hours (a half-hour step takes four).
GATE_SUBSTEP_H = 0.125


def parameter_vector(values: dict[str, float]) -> np.ndarray:
    """Return the parameter vector in :data:`PARAMETERS` order from a mapping of model values."""
    return np.array([float(values[name]) for name in PARAMETERS], dtype=np.float64)


@njit(cache=True, error_model="numpy")
def _power(x: float, n: float) -> float:
    """x**n, by repeated multiplication when n is a small whole number (the model's Hill coefficients)."""
    if n == 6.0:
        x2 = x * x
        return x2 * x2 * x2
    if n == 2.0:
        return x * x
    return float(x**n)


@njit(cache=True, error_model="numpy")
def _hill(x: float, k: float, n: float) -> float:
    if x <= 0.0:
        return 0.0
    xn = _power(x, n)
    return xn / (_power(k, n) + xn)


@njit(cache=True, error_model="numpy")
def _coefficients(p: np.ndarray, u: np.ndarray, stra8: float, tj_open: float) -> tuple:  # type: ignore[type-arg]
    """Return the time-varying coefficients at one instant.

    In order: 4-oxo input, STRA8 synthesis, junction opening rate, differentiation gate, crossing
    rate, spermiation rate.
    """
    oxo_in = p[F_OXO] * p[CL_ISO] * u[0] / p[PLASMA_C]
    stra8_syn = p[K_STRA8_SYN] * _hill(u[1], p[K_STRA8_OCC], p[N_STRA8])
    tj_rate = p[K_TJ_OPEN] * _hill(u[2], p[K_BTB_RA], p[N_BTB])
    rel = stra8 / p[STRA8_REF]
    g_diff = _hill(rel, p[K_DIFF_STRA8], p[N_DIFF])
    g_meiosis = _hill(rel, p[K_MEIOSIS_STRA8], p[N_MEIOSIS])
    sealed = p[TJ_TOTAL] - tj_open
    btb = sealed / (sealed + tj_open)
    cross = p[K_CROSS] * (1.0 - btb) * g_meiosis
    sperm = p[K_SPERMIATION] * u[GATE]
    return oxo_in, stra8_syn, tj_rate, g_diff, cross, sperm


@njit(cache=True, error_model="numpy")
def _weights(q: float, h: float) -> tuple[float, float, float]:
    """Weights (e, a, b) of one exact step of x' = p(t) - q x, p linear: x1 = e x0 + a p0 + b (p1 - p0)."""
    z = q * h
    if z < 0.03:  # Taylor series, truncation below 1e-12 relative (cheaper than exp in the sub-steps)
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
def _etd(x0: float, p0: float, p1: float, q: float, h: float) -> float:
    """One step of x' = p(t) - q x with p linear over the step and q constant (exact)."""
    e, a, b = _weights(q, h)
    return e * x0 + p0 * a + (p1 - p0) * b


@njit(cache=True, error_model="numpy")
def _step(w: tuple[float, float, float], x0: float, p0: float, p1: float) -> float:
    return w[0] * x0 + w[1] * p0 + w[2] * (p1 - p0)


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
    disc = math.sqrt(b2 * b2 + 4.0 * k * flux * km)
    if b2 > 0.0:
        return 2.0 * flux * km / (b2 + disc)
    return (disc - b2) / (2.0 * k)


@njit(cache=True, error_model="numpy")
def _tr_bdf2_duct(e0: float, in0: float, in1: float, h: float, vmax: float, km: float, k: float) -> float:
    """One TR-BDF2 step of e' = in(t) - vmax e / (km + e) - k e, the input linear over the step."""
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
def _gate_cubic(times: np.ndarray, inputs: np.ndarray, i: int, mean: float) -> tuple[float, float, float, float, float]:
    """The spermiation gate's cubic over step i: (g0, d0, g1, d1, bump).

    End values, end slopes times the step length (from the neighbouring rows), and the weight of
    the bump 6 tau (1 - tau), zero at both ends, that gives the cubic the step's exact ``mean``
    (NaN when the mean is unknown).
    """
    n = times.shape[0]
    h = times[i + 1] - times[i]
    lo = i - 1 if i > 0 else i
    hi = i + 2 if i + 2 < n else i + 1
    g0, g1 = inputs[i, GATE], inputs[i + 1, GATE]
    d0 = d1 = 0.0
    if h > 0.0:
        d0 = (inputs[i + 1, GATE] - inputs[lo, GATE]) / (times[i + 1] - times[lo]) * h
        d1 = (inputs[hi, GATE] - inputs[i, GATE]) / (times[hi] - times[i]) * h
    bump = math.nan if math.isnan(mean) else mean - (0.5 * (g0 + g1) + (d0 - d1) / 12.0)
    return g0, d0, g1, d1, bump


@njit(cache=True, error_model="numpy")
def _gate_value(tau: float, g0: float, d0: float, g1: float, d1: float, bump: float) -> float:
    """The gate's cubic (see :func:`_gate_cubic`) at fraction ``tau`` of the step."""
    t2, t3 = tau * tau, tau * tau * tau
    hermite = (2 * t3 - 3 * t2 + 1) * g0 + (t3 - 2 * t2 + tau) * d0 + (-2 * t3 + 3 * t2) * g1 + (t3 - t2) * d1
    return hermite + bump * 6.0 * tau * (1.0 - tau)


@njit(cache=True, error_model="numpy")
def _gate_area(tau: float, g0: float, d0: float, g1: float, d1: float, bump: float) -> float:
    """The integral of the gate's cubic from the step's start to fraction ``tau``, in step lengths."""
    t2, t3 = tau * tau, tau * tau * tau
    t4 = t2 * t2
    return (
        (0.5 * t4 - t3 + tau) * g0
        + (0.25 * t4 - 2.0 * t3 / 3.0 + 0.5 * t2) * d0
        + (t3 - 0.5 * t4) * g1
        + (0.25 * t4 - t3 / 3.0) * d1
        + bump * (3.0 * t2 - 2.0 * t3)
    )


@njit(cache=True, error_model="numpy")
def integrate(times: np.ndarray, inputs: np.ndarray, params: np.ndarray, x0: np.ndarray) -> np.ndarray:
    """Integrate the cascade over a time grid.

    Args:
        times: Increasing grid times, hours (n,).
        inputs: Core signals at the grid times, columns as :data:`INPUTS` (n, 4).
        params: Parameter vector in :data:`PARAMETERS` order.
        x0: States at ``times[0]`` in :data:`SPECIES` order.

    Returns:
        The states at every grid time (n, len(SPECIES)).
    """
    return integrate_driven(times, inputs, params, x0, np.empty((0, len(UPSTREAM))), np.empty(0), GATE_SUBSTEP_H)


@njit(cache=True, error_model="numpy")
def integrate_driven(
    times: np.ndarray,
    inputs: np.ndarray,
    params: np.ndarray,
    x0: np.ndarray,
    upstream: np.ndarray,
    gate_mean: np.ndarray,
    gate_substep_h: float,
) -> np.ndarray:
    """Integrate the cascade, optionally taking its fast-driven head and the gate's averages from the core.

    Args:
        times: Increasing grid times, hours (n,).
        inputs: Core signals at the grid times, columns as :data:`INPUTS` (n, 4).
        params: Parameter vector in :data:`PARAMETERS` order.
        x0: States at ``times[0]`` in :data:`SPECIES` order.
        upstream: The :data:`UPSTREAM` states recorded by a core that carries them (n, 3), used
            instead of integrating them here; or an empty (0, 3) array.
        gate_mean: The spermiation gate's exact mean over each grid step (n - 1,), from the
            integral the core carries (NaN where unknown); or an empty array. The gate's
            interpolant inside each step is corrected to have this mean.
        gate_substep_h: Longest sub-step of mature spermatids and the caput, hours: near the
            ejaculate threshold the caput's saturable loss makes its output follow the spermiation
            flux within minutes.

    Returns:
        The states at every grid time (n, len(SPECIES)).
    """
    p = params
    driven = upstream.shape[0] == times.shape[0]
    with_mean = gate_mean.shape[0] == times.shape[0] - 1
    n = times.shape[0]
    out = np.empty((n, x0.shape[0]))
    out[0] = x0
    q_sg = p[K_SG]
    q_sc = p[K_SC] + p[K_SC_LOSS]
    q_rs = p[K_RS]
    q_ep = p[K_EP]
    q_oxo = p[CL_OXO] / p[OXO_SPACE]
    c0 = _coefficients(p, inputs[0], x0[I_STRA8], x0[I_TJO])
    h_last = -1.0
    q_tj_last = q_pl_last = q_es_last = -1.0
    h_last_tj = h_last_pl = h_last_es = -1.0
    w_tj = w_pl = w_es = (0.0, 0.0, 0.0)
    w_oxo = w_stra8 = w_sg = w_sc = w_rs = w_ep = w_cauda = (0.0, 0.0, 0.0)
    for i in range(n - 1):
        h = times[i + 1] - times[i]
        x = out[i]
        y = out[i + 1]
        if h <= 0.0:
            y[:] = x
            continue
        if h != h_last:  # weights of the constant-rate stages, per step length
            w_oxo = _weights(q_oxo, h)
            w_stra8 = _weights(p[K_STRA8_DEG], h)
            w_sg = _weights(q_sg, h)
            w_sc = _weights(q_sc, h)
            w_rs = _weights(q_rs, h)
            w_ep = _weights(q_ep, h)
            w_cauda = _weights(p[K_CAUDA], h)
            h_last = h
        u1 = inputs[i + 1]
        # 4-oxo-isotretinoin: linear, input from plasma 13-cis-RA
        oxo_in1 = p[F_OXO] * p[CL_ISO] * u1[0] / p[PLASMA_C]
        y[I_OXO] = _step(w_oxo, x[I_OXO], c0[0], oxo_in1)
        # STRA8
        syn1 = p[K_STRA8_SYN] * _hill(u1[1], p[K_STRA8_OCC], p[N_STRA8])
        y[I_STRA8] = _step(w_stra8, x[I_STRA8], c0[1], syn1)
        # open junctions: x' = a(t) T - (a(t) + k_seal) x
        tj1 = p[K_TJ_OPEN] * _hill(u1[2], p[K_BTB_RA], p[N_BTB])
        q_tj = 0.5 * (c0[2] + tj1) + p[K_TJ_SEAL]
        if q_tj != q_tj_last or h != h_last_tj:
            w_tj = _weights(q_tj, h)
            q_tj_last, h_last_tj = q_tj, h
        y[I_TJO] = _step(w_tj, x[I_TJO], c0[2] * p[TJ_TOTAL], tj1 * p[TJ_TOTAL])
        if driven:
            y[I_OXO] = upstream[i + 1, 0]
            y[I_STRA8] = upstream[i + 1, 1]
            y[I_TJO] = upstream[i + 1, 2]
        c1 = _coefficients(p, u1, y[I_STRA8], y[I_TJO])
        # stem cells: logistic self-renewal minus differentiation
        a_ssc = p[R_SSC] - p[K_DIFF] * 0.5 * (c0[3] + c1[3])
        y[I_SSC] = _logistic(x[I_SSC], a_ssc, p[R_SSC] / p[STEM_NICHE], h)
        # spermatogonia (doubling into SG4 and into PL)
        prev0 = p[K_DIFF] * c0[3] * x[I_SSC]
        prev1 = p[K_DIFF] * c1[3] * y[I_SSC]
        for j in range(9):
            k = I_SG1 + j
            y[k] = _step(w_sg, x[k], prev0, prev1)
            factor = 2.0 if (j == 2 or j == 8) else 1.0
            prev0 = factor * q_sg * x[k]
            prev1 = factor * q_sg * y[k]
        # preleptotene: crossing through the opened barrier, gated by STRA8
        q_pl = 0.5 * (c0[4] + c1[4]) + p[K_PL_DEATH]
        if q_pl != q_pl_last or h != h_last_pl:
            w_pl = _weights(q_pl, h)
            q_pl_last, h_last_pl = q_pl, h
        y[I_PL] = _step(w_pl, x[I_PL], prev0, prev1)
        prev0 = c0[4] * x[I_PL]
        prev1 = c1[4] * y[I_PL]
        for j in range(12):
            k = I_SC1 + j
            y[k] = _step(w_sc, x[k], prev0, prev1)
            prev0 = p[K_SC] * x[k]
            prev1 = p[K_SC] * y[k]
        prev0 *= 4.0 * p[MEIOTIC_COMPETENCE]
        prev1 *= 4.0 * p[MEIOTIC_COMPETENCE]
        for j in range(12):
            k = I_RS1 + j
            y[k] = _step(w_rs, x[k], prev0, prev1)
            prev0 = q_rs * x[k]
            prev1 = q_rs * y[k]
        # mature spermatids (spermiation gated by RA, or phagocytosis) and the caput (saturable duct
        # loss), in sub-steps of at most gate_substep_h: near the ejaculate threshold the caput passes only the small
        # excess of the spermiation flux over the duct loss, so the flux's swings within each dosing
        # interval are followed with a cubic (Hermite) interpolant of the spermiation gate.
        # with the gate's exact mean known, each sub-step's rate uses its corrected cubic's integral
        g0, d0, g1, d1, bump = _gate_cubic(times, inputs, i, gate_mean[i] if with_mean else math.nan)
        steady_gate = g0 == g1 and d0 == 0.0 and d1 == 0.0 and (math.isnan(bump) or bump == 0.0)
        m = 1 if steady_gate else int(math.ceil(h / gate_substep_h - 1e-9))
        hs = h / m
        es, ep1 = x[I_ES], x[I_EP1]
        rs_a = prev0
        rate_a = c0[5]
        vmax, km, kep = p[VMAX_DUCT], p[K_DUCT], q_ep
        area_a = 0.0
        for j in range(m):
            tau = (j + 1.0) / m
            gate = _gate_value(tau, g0, d0, g1, d1, 0.0 if math.isnan(bump) else bump)
            rate_b = p[K_SPERMIATION] * gate if j + 1 < m else c1[5]
            rs_b = prev0 + tau * (prev1 - prev0)
            if math.isnan(bump):
                q_es = 0.5 * (rate_a + rate_b) + p[K_PHAGO]
            else:
                area_b = _gate_area(tau, g0, d0, g1, d1, bump)
                q_es = p[K_SPERMIATION] * (area_b - area_a) * m + p[K_PHAGO]
                area_a = area_b
            if q_es != q_es_last or hs != h_last_es:
                w_es = _weights(q_es, hs)
                q_es_last, h_last_es = q_es, hs
            es_b = _step(w_es, es, rs_a, rs_b)
            ep1 = _tr_bdf2_duct(ep1, rate_a * es, rate_b * es_b, hs, vmax, km, kep)
            es, rs_a, rate_a = es_b, rs_b, rate_b
        y[I_ES] = es
        y[I_EP1] = ep1
        y[I_EP2] = _step(w_ep, x[I_EP2], q_ep * x[I_EP1], q_ep * y[I_EP1])
        y[I_EP3] = _step(w_ep, x[I_EP3], q_ep * x[I_EP2], q_ep * y[I_EP2])
        y[I_CAUDA] = _step(w_cauda, x[I_CAUDA], q_ep * x[I_EP3], q_ep * y[I_EP3])
        c0 = c1
    return out


@njit(cache=True, error_model="numpy")
def steady_state(inputs: np.ndarray, params: np.ndarray, x0: np.ndarray) -> np.ndarray:
    """Return the cascade's steady state for constant core signals, starting from ``x0``.

    Stem cells go to the logistic's stable point (zero if ``x0`` has none, or if differentiation
    outpaces self-renewal); every other stage is input over output rate, and the caput's balance
    with the saturable loss is a quadratic.
    """
    p = params
    u = inputs
    x = x0.copy()
    x[I_OXO] = p[F_OXO] * p[CL_ISO] * u[0] / p[PLASMA_C] / (p[CL_OXO] / p[OXO_SPACE])
    x[I_STRA8] = p[K_STRA8_SYN] * _hill(u[1], p[K_STRA8_OCC], p[N_STRA8]) / p[K_STRA8_DEG]
    a = p[K_TJ_OPEN] * _hill(u[2], p[K_BTB_RA], p[N_BTB])
    x[I_TJO] = a * p[TJ_TOTAL] / (a + p[K_TJ_SEAL])
    c = _coefficients(p, u, x[I_STRA8], x[I_TJO])
    growth = p[R_SSC] - p[K_DIFF] * c[3]
    x[I_SSC] = p[STEM_NICHE] * growth / p[R_SSC] if (x0[I_SSC] > 0.0 and growth > 0.0) else 0.0
    flux = p[K_DIFF] * c[3] * x[I_SSC]
    for j in range(9):
        k = I_SG1 + j
        x[k] = flux / p[K_SG]
        flux = (2.0 if (j == 2 or j == 8) else 1.0) * flux
    x[I_PL] = flux / (c[4] + p[K_PL_DEATH])
    flux = c[4] * x[I_PL]
    q_sc = p[K_SC] + p[K_SC_LOSS]
    for j in range(12):
        k = I_SC1 + j
        x[k] = flux / q_sc
        flux = p[K_SC] * x[k]
    flux *= 4.0 * p[MEIOTIC_COMPETENCE]
    for j in range(12):
        x[I_RS1 + j] = flux / p[K_RS]
    x[I_ES] = flux / (c[5] + p[K_PHAGO])
    flux = c[5] * x[I_ES]
    x[I_EP1] = _duct_balance(flux, p[VMAX_DUCT], p[K_DUCT], p[K_EP])
    x[I_EP2] = x[I_EP1]
    x[I_EP3] = x[I_EP1]
    x[I_CAUDA] = p[K_EP] * x[I_EP1] / p[K_CAUDA]
    return x


@njit(cache=True, error_model="numpy")
def refine_driven(
    times: np.ndarray, inputs: np.ndarray, upstream: np.ndarray, gate_mean: np.ndarray, max_step_h: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split every grid step into equal sub-steps of at most ``max_step_h``, for :func:`integrate_driven`.

    The slow signals (RAR occupancy, RA signal, the head states) are interpolated linearly. The
    spermiation gate follows the same cubic that :func:`integrate_driven` uses inside a step (slopes
    from the neighbouring rows), corrected to the step's exact mean where ``gate_mean`` gives one;
    each sub-step's mean is that interpolant's exact integral over it.

    Returns:
        The finer times, inputs, upstream states and gate means.
    """
    n = times.shape[0]
    counts = np.ones(max(n - 1, 0), dtype=np.int64)
    for i in range(n - 1):
        h = times[i + 1] - times[i]
        if h > max_step_h:
            counts[i] = int(math.ceil(h / max_step_h - 1e-9))
    total = int(counts.sum()) + 1
    ft = np.empty(total)
    fin = np.empty((total, inputs.shape[1]))
    fup = np.empty((total, upstream.shape[1]))
    fgm = np.empty(total - 1)
    r = 0
    for i in range(n - 1):
        h = times[i + 1] - times[i]
        m = counts[i]
        g0, d0, g1, d1, bump = _gate_cubic(times, inputs, i, gate_mean[i])
        if math.isnan(bump):
            bump = 0.0
        area_a = 0.0
        for j in range(m):
            tau = j / m
            ft[r] = times[i] + tau * h
            for c in range(inputs.shape[1]):
                fin[r, c] = inputs[i, c] + tau * (inputs[i + 1, c] - inputs[i, c])
            for c in range(upstream.shape[1]):
                fup[r, c] = upstream[i, c] + tau * (upstream[i + 1, c] - upstream[i, c])
            fin[r, GATE] = _gate_value(tau, g0, d0, g1, d1, bump)
            area_b = _gate_area((j + 1.0) / m, g0, d0, g1, d1, bump)
            fgm[r] = (area_b - area_a) * m if m > 1 or not math.isnan(gate_mean[i]) else math.nan
            area_a = area_b
            r += 1
    ft[r] = times[n - 1]
    fin[r] = inputs[n - 1]
    fup[r] = upstream[n - 1]
    return ft, fin, fup, fgm
