"""MASC's prediction numerics: rows scaled so that their squares neither under- nor overflow, and
the float32-checked prediction (float32 projections; every row whose best two classes are closer
than a proven bound of the float32 error is classified again in float64, so the predictions are
float64's)."""
import math

import numpy as np
import torch

def exponent_range(dtype):
    """(low, high): rows whose largest |value| lies outside [2^low, 2^high] have a squared norm
    that under- or overflows ``dtype`` (with a margin for sums over 2^16 features)."""
    info = np.finfo(str(dtype).removeprefix("torch."))
    return info.minexp // 2 + 8, info.maxexp // 2 - 8


def safe_rows(xb):
    """The rows of xb, each scaled by a power of two (exact: every angle stays the same) where
    its squares would under- or overflow; rows in range are left as they are."""
    if not xb.is_floating_point() or not len(xb):
        return xb
    low, high = exponent_range(xb.dtype)
    top = xb.abs().amax(1, keepdim=True)
    exponent = torch.frexp(top).exponent
    unsafe = (top > 0) & ((exponent < low) | (exponent > high))
    return torch.where(unsafe, torch.ldexp(xb, -exponent), xb) if unsafe.any() else xb


# Bounds of the float32-checked prediction (see margins).
U32, U64 = 2.0 ** -24, 2.0 ** -53  # unit roundoffs
SAFETY = 2.0  # margins are this multiple of the proven bound
SAFE_NORM2 = (1e-20, 1e30)  # rows with ||x||^2 outside are re-checked (under/overflow)


def gamma(n, u):
    """Higham's gamma_n = n u / (1 - n u): the relative error bound of an n-term sum or dot
    product, in any order, with or without FMA."""
    return n * u / (1 - n * u) if n * u < 0.5 else math.inf


def float32_matmul_is_ieee(device):
    """False where float32 matmuls may round their inputs to fewer bits (TF32 on CUDA, a
    reduced matmul precision): the bound of :func:`margins` would not hold, so predict uses
    float64 throughout."""
    if torch.get_float32_matmul_precision() != "highest":
        return False
    return not (device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32)


def margins(n_components, D, device):
    """Per class, SAFETY x a proven bound on |float32 cos^2 - exact| + |float64 cos^2 - exact|.

    For a row x (norm r) and class c with k orthonormal float64 rows w_j, the exact value is
    c = sum_j (x.w_j)^2 / r^2 <= 1. Float32 route (Higham, Accuracy and Stability of Numerical
    Algorithms, sec. 3.1; each bound holds for any summation order, so for any BLAS kernel):
    (1) x and w_j rounded to float32 (relative u each) and a D-term float32 dot product:
        |p_j - x.w_j| <= (gamma_D (1+u)^2 + 2u + u^2) sum_i |x_i w_ji| <= eps r, eps = gamma_D + 3u
        (sum_i |x_i w_ji| <= r ||w_j|| = r by Cauchy-Schwarz);
    (2) sum_j p_j^2 - sum_j (x.w_j)^2 <= sum_j eps r (2 |x.w_j| + eps r) <= r^2 (2 eps sqrt(k c)
        + k eps^2) (Cauchy-Schwarz again), and squaring and summing the k terms in float32 add
        gamma_(k+1) times the sum;
    (3) r in float32 (D squares summed, a square root, an exact cast, squared in float64) and the
        float64 division: relative error at most gamma_(D+4), so on c <= 1 at most 2 gamma_(D+4).
    With c <= 1: e32 = (2 eps sqrt(k) + k eps^2)(1 + gamma_(k+1)) + gamma_(k+1) + 2 gamma_(D+4).
    The float64 route (the reference) is the same with float64's u and no input rounding (e64).
    A row is sure when cos2_best - m_best > cos2_b + m_b for every other class b and every such
    cos2_b + m_b < 1, m = SAFETY (e32 + e64): then the float64 values order the same way, strictly,
    and none is clamped to 1. The bounds assume no under/overflow: rows with r^2 outside SAFE_NORM2
    (the zero row included) are re-checked (an underflow's absolute error, at most 2^-149 per
    operation, is then below 1e-30 relative)."""
    k = torch.as_tensor(np.asarray(n_components, dtype=np.float64), device=device)

    def bound(u, eps):
        g = torch.as_tensor([gamma(int(n) + 1, u) for n in n_components], dtype=torch.float64,
                            device=device)
        return (2 * eps * k.sqrt() + k * eps ** 2) * (1 + g) + g + 2 * gamma(D + 4, u)

    return SAFETY * (bound(U32, gamma(D, U32) + 3 * U32) + bound(U64, gamma(D, U64)))


class CheckedPredictor:
    """Float32-checked prediction for solved subspaces: ``W`` (K x D float64 rows, class by
    class), ``owner`` (the class of each row) and their ``n_components`` per class."""

    def __init__(self, W, owner, n_components, n_classes, D, device):
        self.W32 = W.float()
        # summing squared projections per class as a product with a 0/1 (K, C) matrix: any
        # summation order is covered by the bound, and a GEMM is faster than index_add_
        self.member32 = torch.nn.functional.one_hot(owner, n_classes).float()
        self.margin = margins(n_components, D, device)
        self.rechecked = 0  # rows of the last predict classified again in float64

    def best(self, xb, exact):
        """The class index of smallest angle for each row of a batch xb: float32 projections,
        near ties re-checked with ``exact`` (rows -> float64 cos^2 per class)."""
        norm = torch.linalg.vector_norm(xb.float(), dim=1).double().square()
        energy = (xb.float() @ self.W32.T).square_() @ self.member32
        cos2 = energy.double() / norm[:, None]
        pick = cos2.argmax(1)
        # certain: the best class's lower bound beats every other class's upper bound, which
        # stays below 1 (so float64's clamp to 1 cannot make a tie), and no under/overflow
        lower = cos2.gather(1, pick[:, None]).squeeze(1) - self.margin[pick]
        upper = (cos2 + self.margin).scatter_(1, pick[:, None], -math.inf)
        rival = upper.max(1).values
        sure = (lower > rival) & (rival < 1) & (norm >= SAFE_NORM2[0]) & (norm <= SAFE_NORM2[1])
        redo = (~sure).nonzero().squeeze(1)
        if len(redo):
            pick[redo] = exact(xb[redo]).argmax(1)
        self.rechecked += len(redo)
        return pick
