"""BSSEval v4 (Liutkus, Stöter & Ito 2018): framewise SDR, ISR, SIR and SAR of source images.

The numbers are museval's (``museval.evaluate``, mode ``v4``): time-invariant distortion filters
of ``filters_len`` taps are fitted once on the whole track, then every window of ``window``
samples (hop ``hop``) is decomposed into target, spatial distortion, interference and
artifacts. What differs is how they are computed:

- the Gram matrix of the delayed references is block Toeplitz; its correlations are summed
  block by block in the frequency domain, and the filters come from a block Levinson recursion
  (O(L² b³) instead of the O((bL)³) dense solves museval runs once per estimate);
- the windowed projections of all windows, sources and channels are one batched FFT product.

Conventions kept from museval: a window where any reference or estimate sums to zero over its
channels everywhere is NaN for every source; scores aggregate with the median over frames,
NaNs ignored. Unlike museval, a reference that is silent over the whole track does not stop the
evaluation: it is left out of the projection (it spans nothing) and its scores are NaN.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.fft import next_fast_len

_EPS = np.finfo(float).eps


@dataclass
class BssEvalResult:
    """Framewise scores in dB. Shape of each array: ``[S, frames]``; ``times`` in seconds, ``[frames]``."""

    sdr: np.ndarray
    isr: np.ndarray
    sir: np.ndarray
    sar: np.ndarray
    window: int
    hop: int

    def median(self) -> dict[str, np.ndarray]:
        """Median over frames (NaNs ignored) per source: ``{"SDR": [S], "ISR": ..., "SIR": ..., "SAR": ...}``."""
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN sources stay NaN
            return {k.upper(): np.nanmedian(getattr(self, k), axis=1) for k in ("sdr", "isr", "sir", "sar")}

    def times(self, sample_rate: int) -> np.ndarray:
        return np.arange(self.sdr.shape[1]) * self.hop / sample_rate


def _frames(length: int, window: int, hop: int) -> list[tuple[int, int]]:
    """museval's framing: full windows only, or one window over everything when the track is shorter."""
    if window >= length:
        return [(0, length)]
    count = (length - window + hop) // hop
    return [(t * hop, t * hop + window) for t in range(count)]


def _block_spectra(x: np.ndarray, block: int, n: int) -> torch.Tensor:
    """Spectra (FFT size ``n``) of consecutive ``block``-sample blocks, the last one zero-padded.

    Shape: ``[K, T]`` -> complex ``[F, K, nblocks]``.
    """
    k, t = x.shape
    nb = -(-t // block)
    if nb * block == t:
        frames = x.reshape(k, nb, block)
    else:
        frames = np.zeros((k, nb * block))
        frames[:, :t] = x
        frames = frames.reshape(k, nb, block)
    spec = torch.fft.rfft(torch.from_numpy(np.ascontiguousarray(frames)), n=n, dim=-1)
    return spec.permute(2, 0, 1).contiguous()


def _lagged_correlations(
    u: np.ndarray, v: np.ndarray, U: torch.Tensor, V: torch.Tensor, block: int, lags: int, n: int
) -> np.ndarray:
    """``out[k, p, q] = sum_t u_p(t) v_q(t - k)`` for ``k < lags``.

    The sum splits at block boundaries: the part inside each block comes from the blocks'
    spectra ``U``, ``V`` (FFT size ``n >= block + lags``, so no wrap-around); the part that
    reaches back into the previous block from small FFTs of each block's first and the
    previous block's last ``lags`` samples.

    Shape: ``u [P, T]``, ``v [Q, T]``, ``U [F, P, M]``, ``V [F, Q, M]`` -> ``[lags, P, Q]``.
    """
    k = np.arange(lags)
    inside = torch.fft.irfft(torch.matmul(U.conj(), V.transpose(1, 2)), n=n, dim=0).numpy()  # c[t] = Σ u(r) v(r + t)
    out = inside[(n - k) % n]
    nb = U.shape[-1]
    if nb > 1:
        starts = np.arange(1, nb) * block
        # each block's first ``lags`` samples; a last block shorter than the lags is zero-padded
        padded_u = np.pad(u, ((0, 0), (0, lags)))
        heads = np.stack([padded_u[:, s : s + lags] for s in starts], axis=-1)  # [P, lags, M-1]
        tails = np.stack([v[:, s - lags : s] for s in starts], axis=-1)
        m = 2 * lags
        H = torch.fft.rfft(torch.from_numpy(heads), n=m, dim=1).permute(1, 0, 2)
        Tl = torch.fft.rfft(torch.from_numpy(tails), n=m, dim=1).permute(1, 0, 2)
        across = torch.fft.irfft(torch.matmul(H.conj(), Tl.transpose(1, 2)), n=m, dim=0).numpy()
        out += across[lags - k]
    return out


def _energies(spec: np.ndarray, n: int, sources: int) -> np.ndarray:
    """Σ x² per source and window of real signals from their rfft of size ``n`` (Parseval).

    Shape: ``spec [F, (S·C), W]`` complex (contiguous) -> ``[S, W]``.
    """
    f, p, w = spec.shape
    flat = spec.view(np.float64).reshape(f, -1)  # re/im interleaved along the window axis
    total = 2 * np.einsum("fk,fk->k", flat, flat)
    total -= flat[0] ** 2  # DC and Nyquist appear once in a real signal's spectrum
    if n % 2 == 0:
        total -= flat[-1] ** 2
    return total.reshape(sources, -1, w, 2).sum(axis=(1, 3)) / n


def block_levinson(R: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Solve ``T X = Y`` for a symmetric block-Toeplitz ``T`` with ``T[i, j] = R[j - i]`` (``R[-k] = R[k]ᵀ``).

    Whittle/Wiggins-Robinson recursion, O(L² b³) for ``L`` blocks of size ``b``; every step is a
    few matrix products on contiguous slices.

    Shape: ``R [..., L, b, b]``, ``Y [..., L, b, m]`` -> ``X [..., L, b, m]``.
    """
    L, b = R.shape[-3], R.shape[-1]
    m = Y.shape[-1]
    batch = R.shape[:-3]
    # back[:, i·b:(i+1)·b] for step n holds R[n - i]ᵀ (i = 0..n-1): a slice of one wide matrix
    wide_back = np.ascontiguousarray(
        np.concatenate([np.swapaxes(R[..., k, :, :], -1, -2) for k in range(L - 1, 0, -1)], axis=-1)
    )
    wide_fwd = np.ascontiguousarray(np.concatenate([R[..., k, :, :] for k in range(1, L)], axis=-1))  # R[1], R[2], ...
    F = np.zeros((*batch, L * b, b))
    gbuf = np.zeros((*batch, (L + 1) * b, b))  # G lives in gbuf[s : s + n·b]; shifting it is moving s
    X = np.zeros((*batch, L * b, m))
    eye = np.broadcast_to(np.eye(b), (*batch, b, b))
    start = L * b
    F[..., :b, :] = eye
    gbuf[..., start : start + b, :] = eye
    Ef = R[..., 0, :, :].copy()
    Eb = Ef.copy()
    X[..., :b, :] = np.linalg.solve(Ef, Y[..., 0, :, :])
    for n in range(1, L):
        nb = n * b
        back = wide_back[..., (L - 1 - n) * b :]
        G = gbuf[..., start : start + nb, :]
        Df = back @ F[..., :nb, :]
        Db = wide_fwd[..., :nb] @ G
        gf = -np.linalg.solve(Eb, Df)
        gb = -np.linalg.solve(Ef, Db)
        shifted = gbuf[..., start - b : start + nb, :]  # [0; G]
        padded = F[..., : nb + b, :]  # [F; 0]
        dF = shifted @ gf
        shifted += padded @ gb  # G_new = [0; G] + [F; 0] gb
        padded += dF  # F_new = [F; 0] + [0; G] gf
        start -= b
        Ef = Ef + Db @ gf
        Eb = Eb + Df @ gb
        theta = np.linalg.solve(Eb, Y[..., n, :, :] - back @ X[..., :nb, :])
        X[..., : nb + b, :] += shifted @ theta
    return X.reshape(*batch, L, b, m)


def _db(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den == 0, np.inf, 10 * np.log10(num / np.where(den == 0, 1, den)))


def bss_eval_v4(
    *,
    reference: np.ndarray,
    estimate: np.ndarray,
    window: int = 44100,
    hop: int = 44100,
    filters_len: int = 512,
    window_batch: int = 8,
) -> BssEvalResult:
    """BSSEval v4 images metrics, equal to ``museval.evaluate(references, estimates, win, hop)``.

    Args:
        reference: true source images.
        estimate: estimated source images (padded or cut to the reference's length, as museval does).
        window, hop: framing in samples (museval: 1 s windows and hops).
        filters_len: taps of the distortion filters (512 in BSSEval).

    Shape:
        ``reference``, ``estimate``: ``[S, C, T]`` (``[S, T]`` is taken as mono).

    Returns:
        :class:`BssEvalResult` with ``[S, frames]`` arrays.
    """
    ref = np.asarray(reference, dtype=np.float64)
    est = np.asarray(estimate, dtype=np.float64)
    if ref.ndim == 2:
        ref, est = ref[:, None], est[:, None] if est.ndim == 2 else est
    if ref.ndim != 3 or est.ndim != 3 or ref.shape[:2] != est.shape[:2]:
        raise ValueError(f"reference {ref.shape} and estimate {est.shape} must both be [sources, channels, samples]")
    nsrc, nchan, length = ref.shape
    if est.shape[2] != length:
        fixed = np.zeros_like(ref)
        n = min(length, est.shape[2])
        fixed[..., :n] = est[..., :n]
        est = fixed
    frames = _frames(length, window, hop)
    out = np.full((4, nsrc, len(frames)), np.nan)
    active = [j for j in range(nsrc) if np.any(ref[j].sum(0) != 0)]
    if not active:
        return BssEvalResult(out[0], out[1], out[2], out[3], window=window, hop=hop)
    ra, ea = (ref, est) if len(active) == nsrc else (ref[active], est[active])
    na, L = len(active), filters_len

    # Correlations over the whole track, in blocks of one window: the blocks' spectra are then
    # also the windows' spectra (museval's default hop == window).
    win_len = frames[0][1] - frames[0][0]
    nfft = next_fast_len(win_len + L, real=True)
    P = na * nchan
    ref_flat, est_flat = ra.reshape(P, length), ea.reshape(P, length)
    U_ref = _block_spectra(ref_flat, win_len, nfft)  # [F, p, m]
    U_est = _block_spectra(est_flat, win_len, nfft)
    R = _lagged_correlations(ref_flat, ref_flat, U_ref, U_ref, win_len, L, nfft)  # R[k][p, q] = <x_p, x_q delayed k>
    R[0] += _EPS * np.eye(P)
    D = _lagged_correlations(est_flat, ref_flat, U_est, U_ref, win_len, L, nfft).transpose(0, 2, 1)
    # D[a, p=(j,cj), (e,c)] = <x_p delayed a, e_c>

    # Time-invariant distortion filters, in one batched recursion: on all references (C), and
    # on each estimate's own reference only (Cj: the block-diagonal part of the same system).
    own = np.kron(np.eye(na), np.ones((nchan, nchan)))
    X = block_levinson(np.stack([R, R * own]), np.stack([D, D * own]))
    C = X[0]  # [a, (j,cj), (e,c)]
    Cf = torch.fft.rfft(torch.from_numpy(C), n=nfft, dim=0).transpose(1, 2).contiguous()  # [F, (e,c), (j,cj)]
    Cj = np.stack(
        [X[1][:, j * nchan : (j + 1) * nchan, j * nchan : (j + 1) * nchan] for j in range(na)], axis=1
    )  # [a, j, cj, c]
    Cjf = torch.fft.rfft(torch.from_numpy(Cj), n=nfft, dim=0).transpose(2, 3).contiguous()  # [F, j, c, cj]

    # a window is scored only if no reference and no estimate sums to zero over channels throughout it
    starts = np.array([f[0] for f in frames])
    silent = np.zeros(len(frames), bool)
    for x in (ra, ea):
        summed = x[:, 0].copy()  # channel sum [S, T] (faster than a reduction over a short middle axis)
        for c in range(1, nchan):
            summed += x[:, c]
        if hop == win_len or len(frames) == 1:
            active_frames = np.any(summed[:, : len(frames) * win_len].reshape(na, len(frames), win_len) != 0, axis=-1)
        else:
            active_frames = np.stack([np.any(summed[:, a : a + win_len] != 0, axis=-1) for a in starts], axis=1)
        silent |= ~active_frames.all(axis=0)

    if hop == win_len or len(frames) == 1:
        Rw_all, Ew_all = U_ref, U_est
    else:

        def window_spectra(x: np.ndarray) -> torch.Tensor:
            view = np.lib.stride_tricks.sliding_window_view(x, win_len, axis=1)[:, starts]
            return (
                torch.fft.rfft(torch.from_numpy(np.ascontiguousarray(view)), n=nfft, dim=-1)
                .permute(2, 0, 1)
                .contiguous()
            )

        Rw_all, Ew_all = window_spectra(ref_flat), window_spectra(est_flat)
    nf = nfft // 2 + 1
    energy = lambda spec: _energies(spec, nfft, na)  # noqa: E731
    for lo in range(0, len(frames), window_batch):
        hi = min(lo + window_batch, len(frames))
        Rw = Rw_all[:, :, lo:hi].contiguous()  # [F, (j,c), w]
        Ew = Ew_all[:, :, lo:hi].contiguous()
        # projections in the frequency domain (spectra of size >= window + L - 1: linear, no wrap)
        proj = torch.matmul(Cf, Rw).numpy()  # [F, (e,c), w]
        proj_j = torch.matmul(Cjf, Rw.reshape(nf, na, nchan, hi - lo)).reshape(nf, P, hi - lo).numpy()
        ref_w, est_w = Rw.numpy(), Ew.numpy()
        e_ref, e_proj, e_proj_j = energy(ref_w), energy(proj), energy(proj_j)
        sdr = _db(e_ref, energy(est_w - ref_w))
        isr = _db(e_ref, energy(proj_j - ref_w))
        sir = _db(e_proj_j, energy(proj - proj_j))
        sar = _db(e_proj, energy(est_w - proj))
        for m, values in enumerate((sdr, isr, sir, sar)):  # [j, w]
            values[:, silent[lo:hi]] = np.nan
            out[m][np.ix_(active, range(lo, hi))] = values
    return BssEvalResult(out[0], out[1], out[2], out[3], window=window, hop=hop)
