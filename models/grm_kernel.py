r"""The graded response model's log-likelihood and its gradient in one compiled pass.

At 5,000 families x 20 items (100,000 answers) the log-likelihood written as a PyTensor graph
was nine tenths of the cost of a log-density gradient (2.6 of 2.9 ms), bound by scalar ``exp``
and ``log`` calls: numba from PyPI has no vector maths library (SVML), so LLVM cannot vectorise
them. This module computes the same quantity in a numba kernel whose arithmetic loop *does*
vectorise (AVX-512 here; 1.0 ms), and wraps it in a PyTensor ``Op`` (:class:`GRMLogLikelihood`) with a numba
implementation, so nutpie's compiled model uses it directly. PyTensor's other backends (C,
Python) run the same kernel through the Op's ``perform``; there is no JAX implementation.

What it computes
----------------
For answers :math:`y_n` of person :math:`i(n)` to item :math:`j(n)` on dimension :math:`d(n)`,
with padded cutpoints :math:`c_{j,0} < \dots < c_{j,K}` (:func:`padded_cutpoints`),

.. math::

   \ell = \sum_n \log\{\sigma(u_n) - \sigma(u_n - g_n)\}, \qquad
   u_n = a_j \theta_{i,d} - c_{j,y_n}, \quad g_n = c_{j,y_n+1} - c_{j,y_n},

the same value as :func:`models.psychometric_irt.log_category_probability` summed over
answers, and its gradient with respect to :math:`\theta`, :math:`a` and the padded
cutpoints. With :math:`u^* = \max(u, g - u) \ge g/2` (the interval probability is symmetric
under :math:`u \to g - u`), :math:`e = e^{-u^*} \le 1` and :math:`e_2 = e\,e^{g} = e^{g-u^*}`,

.. math::

   \log\{\sigma(u) - \sigma(u - g)\} = -u^* + \log(e^{g} - 1) - \log(1 + e)
       - \max(g - u^*, 0) - \log\{1 + \min(e_2, 1/e_2)\},

and, with :math:`s_1 = \sigma(-u^*)` and :math:`s_2 = \sigma(u^* - g)`,
:math:`\partial\ell/\partial u = \pm(s_1 - s_2)` (+ when :math:`u \ge g - u`) and, at fixed
:math:`u`, :math:`\partial\ell/\partial g = s_2` (or :math:`s_1` when :math:`u < g - u`)
:math:`+ 1/(e^{g} - 1)`. Both logarithms have arguments in [1, 2].

The two elementary functions
----------------------------
``exp_neg(x) = exp(-x)`` for :math:`x \ge 0` (range reduction by :math:`\ln 2`, a degree-13
Taylor polynomial on :math:`|r| \le \ln 2 / 2`, scaling by a table of :math:`2^{-n}`) and
``log1p_unit(x) = log(1 + x)`` for :math:`0 \le x \le 1` (the series of
:math:`2\,\operatorname{artanh}(x / (2 + x))`, to :math:`s^{35}` with :math:`s \le 1/3`). Both
are polynomials, so LLVM vectorises them; both are tested against NumPy to a few units in the
last place (``tests/test_grm_kernel.py``). They are not general-purpose: they hold on those ranges
only, which is all the kernel needs.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import pytensor
import pytensor.tensor as pt
from pytensor.gradient import DisconnectedType, disconnected_type, grad_not_implemented
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op
from pytensor.link.numba.dispatch.basic import register_funcify_default_op_cache_key

#: PyTensor's own fast-math flags for numba when its ``numba__fastmath`` is on: no "nnan"/"ninf",
#: so infinities and NaNs keep their IEEE meaning (a NaN trait gives a NaN log-density, which
#: nutpie treats as divergent). The toolkit turns it off (``models/__init__.py``: with it, a cold
#: and a warm compile cache gave different draws for the same seed), and the kernel follows.
_FASTMATH = {"arcp", "contract", "afn", "reassoc", "nsz"} if pytensor.config.numba__fastmath else False
_NUMBA = dict(fastmath=_FASTMATH, error_model="numpy", cache=True)

_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_INV_LN2 = 1.4426950408889634
#: 2**-n for n = 0..1079 (from n = 1075 on it is 0): the scaling step of ``exp_neg``.
_POW2_NEG = np.ldexp(1.0, -np.arange(1080))
#: Answers processed per block: the block's gathered values stay in the L1/L2 cache.
_BLOCK = 2048


@numba.njit(inline="always", **_NUMBA)
def exp_neg(x):
    """exp(-x) for x >= 0 (x is capped at 740, where exp(-x) is below 1e-321)."""
    x = min(x, 740.0)
    n = math.floor(x * _INV_LN2 + 0.5)
    r = (n * _LN2_HI - x) + n * _LN2_LO              # -x = -n ln2 + r, |r| <= ln2 / 2
    p = 1.0 / 6227020800.0                            # sum_{k <= 13} r^k / k!
    p = p * r + 1.0 / 479001600.0
    p = p * r + 1.0 / 39916800.0
    p = p * r + 1.0 / 3628800.0
    p = p * r + 1.0 / 362880.0
    p = p * r + 1.0 / 40320.0
    p = p * r + 1.0 / 5040.0
    p = p * r + 1.0 / 720.0
    p = p * r + 1.0 / 120.0
    p = p * r + 1.0 / 24.0
    p = p * r + 1.0 / 6.0
    p = p * r + 0.5
    p = p * r + 1.0
    p = p * r + 1.0
    return p * _POW2_NEG[np.int64(n)]


@numba.njit(inline="always", **_NUMBA)
def log1p_unit(x):
    """log(1 + x) for 0 <= x <= 1, as 2 artanh(s) with s = x / (2 + x) <= 1/3."""
    s = x / (2.0 + x)
    s2 = s * s
    q = 1.0 / 35.0                                    # sum_{k <= 17} s^(2k) / (2k + 1)
    q = q * s2 + 1.0 / 33.0
    q = q * s2 + 1.0 / 31.0
    q = q * s2 + 1.0 / 29.0
    q = q * s2 + 1.0 / 27.0
    q = q * s2 + 1.0 / 25.0
    q = q * s2 + 1.0 / 23.0
    q = q * s2 + 1.0 / 21.0
    q = q * s2 + 1.0 / 19.0
    q = q * s2 + 1.0 / 17.0
    q = q * s2 + 1.0 / 15.0
    q = q * s2 + 1.0 / 13.0
    q = q * s2 + 1.0 / 11.0
    q = q * s2 + 1.0 / 9.0
    q = q * s2 + 1.0 / 7.0
    q = q * s2 + 1.0 / 5.0
    q = q * s2 + 1.0 / 3.0
    q = q * s2 + 1.0
    return 2.0 * s * q


@numba.njit(**_NUMBA)
def _block_terms(u, gap, exp_gap, log_expm1_gap, d_u, d_gap, m):
    """Summed log-probabilities of ``m`` gathered answers, and their derivatives (a vectorised loop)."""
    block_sum = 0.0
    for t in range(m):
        ut = u[t]
        gt = gap[t]
        v = gt - ut
        us = max(ut, v)
        e = exp_neg(us)
        e2 = e * exp_gap[t]
        block_sum += (-us + log_expm1_gap[t] - log1p_unit(e)
                      - max(gt - us, 0.0) - log1p_unit(min(e2, 1.0 / max(e2, 1e-300))))
        s1 = e / (1.0 + e)                            # sigma(-u*)
        s2 = 1.0 / (1.0 + e2)                         # sigma(u* - g)
        sign = 1.0 if ut >= v else -1.0
        d_u[t] = sign * (s1 - s2)
        d_gap[t] = s2 + (s1 - s2) * (0.5 - 0.5 * sign)    # s2 if u >= g - u, else s1
    return block_sum


@numba.njit(**_NUMBA)
def grm_loglik_grad(theta, a, pad, theta_index, cell):
    r"""Log-likelihood of the answers and its gradient (see the module docstring).

    ``theta`` (person, dimension), ``a`` (item,), ``pad`` (item, K+1) padded cutpoints;
    per answer, ``theta_index`` = person * n_dimension + dimension (the flat index of its
    trait) and ``cell`` = item * K + answer (its item-and-category cell); an index out of
    range raises ``IndexError``. Returns ``(loglik, d_theta, d_a, d_pad)``.

    Per-cell tables (cutpoint, gap, ...) are computed once; answers are processed in blocks:
    gather (scalar loop), log-probabilities and derivatives (:func:`_block_terms`,
    vectorised), and accumulation of the gradient (scalar loop).
    """
    n_item, width = pad.shape
    n_cat = width - 1
    n_cell = n_item * n_cat
    # The tables of psychometric_irt.category_tables, computed here with the gap's analytic
    # derivative 1 / (e^g - 1): taking the tables as inputs and letting PyTensor differentiate
    # them cancels -count against +count at the outer pads (residues of 1e-15 for 1e-130).
    lower = np.empty(n_cell)
    gap = np.empty(n_cell)
    exp_gap = np.empty(n_cell)
    log_expm1_gap = np.empty(n_cell)
    inv_expm1_gap = np.empty(n_cell)
    a_cell = np.empty(n_cell)
    for j in range(n_item):
        for k in range(n_cat):
            c = j * n_cat + k
            g = pad[j, k + 1] - pad[j, k]
            lower[c] = pad[j, k]
            gap[c] = g
            exp_gap[c] = math.exp(g)
            log_expm1_gap[c] = g + math.log1p(-math.exp(-g))
            inv_expm1_gap[c] = 1.0 / math.expm1(g)
            a_cell[c] = a[j]
    th = np.ascontiguousarray(theta).ravel()
    d_theta = np.zeros(th.size)
    d_a_cell = np.zeros(n_cell)
    d_lower = np.zeros(n_cell)     # d loglik / d c_{j,k} through u (the gap's share is added below)
    d_gap = np.zeros(n_cell)       # d loglik / d g_{j,k} at fixed u
    bu = np.empty(_BLOCK)            # per block: u, gap, e^gap, log(e^gap - 1), du, dg
    bg = np.empty(_BLOCK)
    beg = np.empty(_BLOCK)
    blg = np.empty(_BLOCK)
    bdu = np.empty(_BLOCK)
    bdg = np.empty(_BLOCK)
    b_cell = np.empty(_BLOCK, np.int32)    # ... and each answer's cell, trait index, trait, a
    b_trait = np.empty(_BLOCK, np.int32)
    b_theta = np.empty(_BLOCK)
    b_a = np.empty(_BLOCK)
    total = 0.0
    n = theta_index.shape[0]
    for start in range(0, n, _BLOCK):
        m = min(_BLOCK, n - start)
        for t in range(m):
            c = cell[start + t]
            p = theta_index[start + t]
            if c < 0 or c >= n_cell or p < 0 or p >= th.size:
                raise IndexError("grm_loglik_grad: an answer's theta_index or cell is out of range")
            b_cell[t] = c
            b_trait[t] = p
            b_theta[t] = th[p]
            b_a[t] = a_cell[c]
            bu[t] = b_a[t] * b_theta[t] - lower[c]
            bg[t] = gap[c]
            beg[t] = exp_gap[c]
            blg[t] = log_expm1_gap[c]
        total += _block_terms(bu, bg, beg, blg, bdu, bdg, m)
        for t in range(m):
            c = b_cell[t]
            du = bdu[t]
            d_theta[b_trait[t]] += du * b_a[t]
            d_a_cell[c] += du * b_theta[t]
            d_lower[c] -= du
            d_gap[c] += bdg[t] + inv_expm1_gap[c]     # d log(e^g - 1) / dg = 1 + 1 / (e^g - 1)
    d_a = np.zeros(n_item)
    d_pad = np.zeros((n_item, width))
    for j in range(n_item):
        for k in range(n_cat):
            c = j * n_cat + k
            d_a[j] += d_a_cell[c]
            d_pad[j, k] += d_lower[c] - d_gap[c]       # g = c_{k+1} - c_k
            d_pad[j, k + 1] += d_gap[c]
    return total, d_theta.reshape(theta.shape), d_a, d_pad


class GRMLogLikelihood(Op):
    """PyTensor Op: ``(theta, a, pad, theta_index, cell) -> (loglik, d_theta, d_a, d_pad)``.

    Use :func:`grm_loglik`; the extra outputs are the gradient, which the Op's ``pullback``
    scales by the incoming cotangent (so PyTensor's ``grad`` costs nothing more than
    the forward pass). Second derivatives are not implemented.
    """

    __props__ = ()

    def make_node(self, theta, a, pad, theta_index, cell):
        theta = pt.as_tensor_variable(theta, dtype="float64")
        a = pt.as_tensor_variable(a, dtype="float64")
        pad = pt.as_tensor_variable(pad, dtype="float64")
        codes = [pt.cast(pt.as_tensor_variable(x), "int32") for x in (theta_index, cell)]
        if theta.ndim != 2 or a.ndim != 1 or pad.ndim != 2 or any(c.ndim != 1 for c in codes):
            raise ValueError("GRMLogLikelihood needs theta (person, dimension), a (item,), pad (item, K+1) "
                             "and 1-d theta_index and cell")
        outputs = [pt.dscalar(), theta.type(), a.type(), pad.type()]
        return Apply(self, [theta, a, pad, *codes], outputs)

    def perform(self, node, inputs, output_storage):
        results = grm_loglik_grad(*(np.ascontiguousarray(x) for x in inputs))
        for store, value in zip(output_storage, results, strict=True):
            store[0] = np.asarray(value, dtype="float64")

    def pullback(self, inputs, outputs, cotangents):
        g_loglik = cotangents[0]
        if any(not isinstance(g.type, DisconnectedType) for g in cotangents[1:]):
            return [grad_not_implemented(self, i, x, "second derivatives of the GRM log-likelihood")
                    for i, x in enumerate(inputs[:3])] + [disconnected_type() for _ in inputs[3:]]
        if isinstance(g_loglik.type, DisconnectedType):
            return [disconnected_type() for _ in inputs]
        return [g_loglik * outputs[1], g_loglik * outputs[2], g_loglik * outputs[3],
                *(disconnected_type() for _ in inputs[3:])]

    def connection_pattern(self, node):
        # The log-likelihood depends on every float input; the gradient outputs too, but they
        # are never differentiated. The integer codes are not differentiable.
        return [[True, True, True, True]] * 3 + [[False, False, False, False]] * 2


_grm_loglik_op = GRMLogLikelihood()


def grm_loglik(theta, a, pad, theta_index, cell) -> pt.TensorVariable:
    """Summed log-likelihood of the answers (a PyTensor scalar) through :class:`GRMLogLikelihood`.

    Per answer, ``theta_index = person * n_dimension + dimension`` and
    ``cell = item * K + answer`` (integers; see :func:`grm_loglik_grad`).
    """
    return _grm_loglik_op(theta, a, pad, theta_index, cell)[0]


@register_funcify_default_op_cache_key(GRMLogLikelihood)
def _numba_funcify_grm_loglik(op, node=None, **kwargs):
    @numba.njit(fastmath=_FASTMATH, error_model="numpy", no_cpython_wrapper=True, no_cfunc_wrapper=True)
    def grm_loglik_numba(theta, a, pad, theta_index, cell):
        total, d_theta, d_a, d_pad = grm_loglik_grad(theta, a, pad, theta_index, cell)
        return np.asarray(total), d_theta, d_a, d_pad

    return grm_loglik_numba


@numba.njit(**_NUMBA)
def _node_terms(theta_nodes, a_j, lower, gap, exp_gap, log_expm1_gap, out):
    """Add log P(answer | theta) at every node to ``out`` (a vectorised loop over nodes)."""
    for q in range(theta_nodes.shape[0]):
        ut = a_j * theta_nodes[q] - lower
        v = gap - ut
        us = max(ut, v)
        e = exp_neg(us)
        e2 = e * exp_gap
        out[q] += (-us + log_expm1_gap - log1p_unit(e)
                   - max(gap - us, 0.0) - log1p_unit(min(e2, 1.0 / max(e2, 1e-300))))


@numba.njit(parallel=True, **_NUMBA)
def grm_marginal_loglik(theta_nodes, log_w, a, pad, person, dimension, cell, mean, chol_inv, log_det):
    r"""Each person's marginal log-likelihood per draw, the traits integrated out by quadrature.

    :math:`\log \sum_q \exp\{\log w_{iq} + \sum_j \log P(y_{ij} \mid \theta_{iq})
    + \log N(\theta_{iq}; \mu_i, R)\}` for every draw: ``theta_nodes`` (person, dimension,
    node) and ``log_w`` (person, node) the quadrature (:mod:`models.irt_loo`); per draw ``a``
    (draw, item), ``pad`` (draw, item, K+1) padded slope-intercept cutpoints (as
    :func:`grm_loglik_grad`), ``mean`` (draw, person, dimension) the latent-regression means,
    ``chol_inv`` (draw, dimension, dimension) the inverse Cholesky factor of :math:`R` and
    ``log_det`` (draw,) :math:`\log|L|`; per answer its ``person``, ``dimension`` and
    ``cell`` = item * K + answer. Returns (draw, person).
    """
    n_draw, n_item, width = pad.shape
    n_cat = width - 1
    n_person, n_dim, n_node = theta_nodes.shape
    out = np.empty((n_draw, n_person))
    half_log_2pi = 0.5 * math.log(2.0 * math.pi)
    for s in numba.prange(n_draw):         # draws in parallel, each with its own work arrays
        ll = log_w.copy()
        u = np.empty(n_node)
        diff = np.empty((n_dim, n_node))
        for n in range(cell.shape[0]):
            c = cell[n]
            j = c // n_cat
            k = c - j * n_cat
            lo = pad[s, j, k]
            g = pad[s, j, k + 1] - lo
            _node_terms(theta_nodes[person[n], dimension[n]], a[s, j], lo, g, math.exp(g),
                        g + math.log1p(-math.exp(-g)), ll[person[n]])
        for i in range(n_person):
            for d in range(n_dim):
                diff[d] = theta_nodes[i, d] - mean[s, i, d]
            row = ll[i]
            for d in range(n_dim):
                u[:] = 0.0
                for e in range(d + 1):
                    u += chol_inv[s, d, e] * diff[e]
                row -= 0.5 * u * u
            row -= log_det[s] + n_dim * half_log_2pi
            top = row.max()
            out[s, i] = top + math.log(np.exp(row - top).sum())
    return out
