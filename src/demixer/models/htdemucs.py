"""Hybrid Transformer Demucs (Rouard, Massa & Défossez 2023), checkpoint-compatible with ``demucs`` 4.

Two U-Nets, one on the waveform and one on the complex spectrogram (real and imaginary parts as
channels), meet in a cross-domain transformer at the bottom; the output is the sum of both
branches. Module and parameter names follow ``demucs.htdemucs.HTDemucs``, so the published
``htdemucs``, ``htdemucs_ft`` and ``htdemucs_6s`` state dicts load unchanged, and the constructor
settings of a published package (its ``kwargs``) map onto :class:`HTDemucsConfig`.

Written for inference speed on our engine: attention runs on
``torch.nn.functional.scaled_dot_product_attention`` (no ``T x T`` score matrix is stored), and
the models of a bag (``htdemucs_ft``) run only for the stems their weights select.

Supported: the settings of every published HTDemucs (complex-as-channels, sinusoidal positional
embeddings, dense attention, no band splitting). Others are refused with the setting's name.

einops axes: ``b`` batch, ``c`` channels, ``f`` frequency, ``t`` time, ``s`` sources, ``d`` features.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, cast

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ..errors import require
from ..transforms import STFT
from .base import FastRecipe, SeparationModel
from .blocks.fusion import Fusable


@dataclass
class HTDemucsConfig:
    """Constructor settings, named as ``demucs.htdemucs.HTDemucs``'s arguments.

    ``segment`` (seconds) is the training length: shorter inputs are zero-padded to it, as the
    reference does, and it is the engine's default chunk length.
    """

    sources: tuple[str, ...] = ("drums", "bass", "other", "vocals")
    sample_rate: int = 44100
    audio_channels: int = 2
    channels: int = 48
    channels_time: int | None = None
    growth: float = 2
    nfft: int = 4096
    depth: int = 4
    rewrite: bool = True
    freq_emb: float = 0.2
    emb_scale: float = 10
    emb_smooth: bool = True
    kernel_size: int = 8
    time_stride: int = 2
    stride: int = 4
    context: int = 1
    context_enc: int = 0
    norm_starts: int = 4
    norm_groups: int = 4
    dconv_mode: int = 3
    dconv_depth: int = 2
    dconv_comp: float = 8
    bottom_channels: int = 512
    t_layers: int = 5
    t_hidden_scale: float = 4.0
    t_heads: int = 8
    t_norm_in: bool = True
    t_norm_out: bool = True
    t_max_period: float = 10000.0
    t_layer_scale: bool = True
    t_gelu: bool = True
    t_weight_pos_embed: float = 1.0
    t_cross_first: bool = False
    segment: float = 7.8
    use_train_segment: bool = True

    # demucs settings whose only supported value is the one every published model uses
    _FIXED = {
        "cac": True,
        "t_norm_first": True,
        "wiener_iters": 0,
        "end_iters": 0,
        "multi_freqs": [],
        "t_emb": "sin",
        "t_norm_in_group": False,
        "t_group_norm": False,
        "t_sparse_self_attn": False,
        "t_sparse_cross_attn": False,
        "t_sin_random_shift": 0,
    }
    # demucs settings that only matter for training (ignored here)
    _TRAINING = {
        "wiener_residual",
        "multi_freqs_depth",
        "dconv_init",
        "t_dropout",
        "t_max_positions",
        "t_weight_decay",
        "t_lr",
        "t_cape_mean_normalize",
        "t_cape_augment",
        "t_cape_glob_loc_scale",
        "t_mask_type",
        "t_mask_random_seed",
        "t_sparse_attn_window",
        "t_global_window",
        "t_sparsity",
        "t_auto_sparsity",
        "rescale",
    }

    @classmethod
    def from_demucs(cls, sources: list[str], kwargs: dict) -> HTDemucsConfig:
        """The config of a published package's ``kwargs`` (``samplerate`` -> ``sample_rate``, Fractions -> float).

        Raises:
            ValueError: a setting this implementation does not support, named.
        """
        kwargs = dict(kwargs)
        kwargs.pop("sources", None)
        own = {f.name for f in fields(cls)}
        out: dict = {"sources": tuple(sources)}
        for key, value in kwargs.items():
            if key == "samplerate":
                out["sample_rate"] = int(value)
            elif key in cls._FIXED:
                if value != cls._FIXED[key] and not (key == "multi_freqs" and not value):
                    raise ValueError(f"HTDemucs setting {key}={value!r} is not supported (only {cls._FIXED[key]!r})")
            elif key in cls._TRAINING:
                continue
            elif key in own:
                out[key] = float(value) if key == "segment" else value
            else:
                raise ValueError(f"unknown HTDemucs setting {key}={value!r}")
        return cls(**out)


def _pad1d(x: Tensor, left: int, right: int) -> Tensor:
    """Reflection padding that also works when the signal is shorter than the padding (zeros first)."""
    length = x.shape[-1]
    if length <= max(left, right):
        extra = max(left, right) - length + 1
        extra_right = min(right, extra)
        extra_left = extra - extra_right
        x = F.pad(x, (extra_left, extra_right))
        left, right = left - extra_left, right - extra_right
    return F.pad(x, (left, right), mode="reflect")


class LayerScale(nn.Module):
    """Per-channel residual scale; ``channel_last`` for ``[B, T, C]`` inputs, else ``[B, C, T]``."""

    def __init__(self, channels: int, channel_last: bool = False) -> None:
        super().__init__()
        self.channel_last = channel_last
        self.scale = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        return self.scale * x if self.channel_last else self.scale[:, None] * x


class DConv(Fusable):
    """Residual branches of dilated convolutions in a compressed channel space.

    Shape: ``[B, C, T]`` -> ``[B, C, T]``.
    """

    def __init__(self, channels: int, compress: float, depth: int) -> None:
        super().__init__()
        hidden = int(channels / compress)
        self.layers = nn.ModuleList()
        for d in range(depth):
            dilation = 2**d
            self.layers.append(
                nn.Sequential(
                    nn.Conv1d(channels, hidden, 3, dilation=dilation, padding=dilation),
                    nn.GroupNorm(1, hidden),
                    nn.GELU(),
                    nn.Conv1d(hidden, 2 * channels, 1),
                    nn.GroupNorm(1, 2 * channels),
                    nn.GLU(1),
                    LayerScale(channels),
                )
            )

    rows_at_once = 32  # rows of a [N, C, T] input processed together by the fused path (they stay in cache)

    def forward(self, x: Tensor) -> Tensor:
        if self.fused:
            return self.forward_fused(x)
        for layer in self.layers:
            x = x + layer(x)
        return x

    def forward_fused(self, x: Tensor) -> Tensor:
        """:meth:`forward` updating ``x`` in place, a few rows at a time, with each branch's second
        GroupNorm folded into the convolution before it (:meth:`_fused`)."""
        self.check_fused_inference()
        x = x.contiguous()  # updated in place below: callers hand over their own intermediate
        for layer in self.layers:
            for lo in range(0, x.shape[0], self.rows_at_once):
                rows = x[lo : lo + self.rows_at_once]
                self._fused(layer, rows, rows)  # a block's rows are read before they are written
        return x

    @staticmethod
    def _fused(layer: nn.Module, x: Tensor, out: Tensor) -> None:
        """One residual branch at inference: ``out = x + layer(x)``.

        The second GroupNorm is folded into the 1x1 convolution before it: its statistics follow
        from the mean and covariance of the few compressed channels, so the wide pre-GLU
        activation is never normalised in a separate pass, and the layer scale goes into the
        GLU's value half.
        """
        conv1, gn1, _, conv2, gn2, _, scale = cast(
            tuple[nn.Conv1d, nn.GroupNorm, nn.GELU, nn.Conv1d, nn.GroupNorm, nn.GLU, LayerScale],
            tuple(layer.children()),
        )
        h = F.gelu(gn1(conv1(x)))  # [N, I, T], I = C / compress
        t = h.shape[-1]
        w, b = conv2.weight[:, :, 0], cast(Tensor, conv2.bias)  # [2C, I], [2C] (DConv's convolutions have biases)
        h_mean = h.mean(dim=2)  # [N, I]
        centred = h - h_mean[:, :, None]
        cov = torch.bmm(centred, centred.transpose(1, 2)) / t  # [N, I, I]
        z_mean = h_mean @ w.t() + b  # [N, 2C]: each output channel's mean over time
        mu = z_mean.mean(dim=1, keepdim=True)
        var = (torch.einsum("oi,nij,oj->no", w, cov, w) + (z_mean - mu) ** 2).mean(dim=1, keepdim=True)
        gain = torch.rsqrt(var + gn2.eps) * gn2.weight  # [N, 2C]
        w_eff = w[None] * gain[:, :, None]  # [N, 2C, I]
        b_eff = (b - mu) * gain + gn2.bias
        c = w.shape[0] // 2
        value = torch.baddbmm((b_eff[:, :c] * scale.scale)[:, :, None], w_eff[:, :c] * scale.scale[:, None], h)
        gate = torch.baddbmm(b_eff[:, c:, None], w_eff[:, c:], h).sigmoid_()
        torch.addcmul(x, value, gate, out=out)


def _norm(norm: bool, groups: int, channels: int) -> nn.Module:
    return nn.GroupNorm(groups, channels) if norm else nn.Identity()


class ConvGLU(Fusable):
    """``glu(norm(conv(x)), dim=1)``, the rewrite step of the encoder and decoder layers.

    Fused (and without a norm), the two halves are computed apart and combined in place, so the
    double-width activation never exists. Holds no weights of its own: the layer's ``rewrite`` and
    norm keep their checkpoint names.
    """

    def forward(self, conv: nn.Conv1d | nn.Conv2d, norm: nn.Module, x: Tensor) -> Tensor:
        if self.fused and isinstance(norm, nn.Identity):
            self.check_fused_inference()
            return _conv_glu_halves(conv, x)
        return F.glu(norm(conv(x)), dim=1)


def _conv_glu_halves(conv: nn.Conv1d | nn.Conv2d, x: Tensor) -> Tensor:
    """``glu(conv(x), dim=1)`` with the value and gate halves computed apart, multiplied in place."""
    c = conv.out_channels // 2
    value = conv._conv_forward(x, conv.weight[:c], conv.bias[:c] if conv.bias is not None else None)
    gate = conv._conv_forward(x, conv.weight[c:], conv.bias[c:] if conv.bias is not None else None)
    return value.mul_(gate.sigmoid_())


def _on_frames(module: nn.Module, y: Tensor) -> Tensor:
    """Apply a ``[B, C, T]`` module to every frequency row of ``[B, C, F, T]``."""
    b, c, f, t = y.shape
    out = module(y.permute(0, 2, 1, 3).reshape(b * f, c, t))
    return out.view(b, f, c, t).permute(0, 2, 1, 3)


class HEncLayer(nn.Module):
    """Encoder layer of either branch: strided conv, GELU, DConv, 1x1 (or wider) rewrite + GLU.

    Shape: freq ``[B, C, F, T]`` -> ``[B, C', F / stride, T]``; time ``[B, C, T]`` -> ``[B, C', T / stride]``.
    """

    def __init__(
        self,
        chin: int,
        chout: int,
        kernel_size: int,
        stride: int,
        norm_groups: int,
        freq: bool,
        dconv: bool,
        norm: bool,
        context: int,
        dconv_kw: dict,
        pad: bool = True,
        rewrite: bool = True,
        empty: bool = False,
    ) -> None:
        super().__init__()
        self.freq, self.stride, self.empty = freq, stride, empty
        self.kernel_size = kernel_size
        pad_n = kernel_size // 4 if pad else 0
        klass: type[nn.Conv1d | nn.Conv2d]
        self.conv: nn.Module
        if freq:
            self.conv = nn.Conv2d(chin, chout, (kernel_size, 1), (stride, 1), (pad_n, 0))
            klass = nn.Conv2d
        else:
            self.conv = nn.Conv1d(chin, chout, kernel_size, stride, pad_n)
            klass = nn.Conv1d
        if empty:
            return
        self.norm1 = _norm(norm, norm_groups, chout)
        self.rewrite = klass(chout, 2 * chout, 1 + 2 * context, 1, context) if rewrite else None
        self.conv_glu = ConvGLU()
        if rewrite:
            self.norm2 = _norm(norm, norm_groups, 2 * chout)
        self.dconv = DConv(chout, **dconv_kw) if dconv else None

    def forward(self, x: Tensor, inject: Tensor | None = None) -> Tensor:
        if not self.freq and x.shape[-1] % self.stride:
            x = F.pad(x, (0, self.stride - x.shape[-1] % self.stride))
        y = self.conv(x)
        if self.empty:
            return y
        if inject is not None:
            y = y + (inject[:, :, None] if inject.dim() == 3 and y.dim() == 4 else inject)
        y = F.gelu(self.norm1(y))
        if self.dconv is not None:
            y = _on_frames(self.dconv, y) if self.freq else self.dconv(y)
        if self.rewrite is not None:
            y = self.conv_glu(self.rewrite, self.norm2, y)
        return y


class HDecLayer(nn.Module):
    """Decoder layer of either branch: skip add, rewrite + GLU, DConv, transposed strided conv.

    ``forward`` returns the output and the input of the transposed conv.
    """

    def __init__(
        self,
        chin: int,
        chout: int,
        kernel_size: int,
        stride: int,
        norm_groups: int,
        freq: bool,
        dconv: bool,
        norm: bool,
        context: int,
        dconv_kw: dict,
        last: bool = False,
        pad: bool = True,
        rewrite: bool = True,
        empty: bool = False,
    ) -> None:
        super().__init__()
        self.freq, self.chin, self.empty, self.last = freq, chin, empty, last
        self.pad = kernel_size // 4 if pad else 0
        klass: type[nn.Conv1d | nn.Conv2d]
        self.conv_tr: nn.Module
        if freq:
            self.conv_tr = nn.ConvTranspose2d(chin, chout, (kernel_size, 1), (stride, 1))
            klass = nn.Conv2d
        else:
            self.conv_tr = nn.ConvTranspose1d(chin, chout, kernel_size, stride)
            klass = nn.Conv1d
        self.norm2 = _norm(norm, norm_groups, chout)
        if empty:
            return
        self.rewrite = klass(chin, 2 * chin, 1 + 2 * context, 1, context) if rewrite else None
        self.conv_glu = ConvGLU()
        if rewrite:
            self.norm1 = _norm(norm, norm_groups, 2 * chin)
        self.dconv = DConv(chin, **dconv_kw) if dconv else None

    def forward(self, x: Tensor, skip: Tensor | None, length: int) -> tuple[Tensor, Tensor]:
        if self.freq and x.dim() == 3:
            x = x.view(x.shape[0], self.chin, -1, x.shape[-1])
        if self.empty or skip is None:
            y = x
        else:
            x = x + skip
            y = self.conv_glu(self.rewrite, self.norm1, x) if self.rewrite is not None else x
            if self.dconv is not None:
                y = _on_frames(self.dconv, y) if self.freq else self.dconv(y)
        z = self.norm2(self.conv_tr(y))
        if self.freq:
            if self.pad:
                z = z[..., self.pad : -self.pad, :]
        else:
            z = z[..., self.pad : self.pad + length]
        if not self.last:
            z = F.gelu(z)
        return z, y


class ScaledEmbedding(nn.Module):
    """Frequency embedding whose weights are stored divided by ``scale``."""

    def __init__(self, num: int, dim: int, scale: float) -> None:
        super().__init__()
        self.embedding = nn.Embedding(num, dim)
        self.scale = scale

    def forward(self, idx: Tensor) -> Tensor:
        return self.embedding(idx) * self.scale


class _Attention(nn.Module):
    """``nn.MultiheadAttention``'s parameters (``in_proj_weight``, ``out_proj``), run on SDPA. Inputs ``[B, T, C]``."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def forward(self, q: Tensor, kv: Tensor) -> Tensor:
        dim = q.shape[-1]
        w, b = self.in_proj_weight, self.in_proj_bias
        if q is kv:
            qq, kk, vv = F.linear(q, w, b).chunk(3, dim=-1)
        else:
            qq = F.linear(q, w[:dim], b[:dim])
            kk, vv = F.linear(kv, w[dim:], b[dim:]).chunk(2, dim=-1)
        qq, kk, vv = (rearrange(t, "b t (h d) -> b h t d", h=self.heads) for t in (qq, kk, vv))
        out = F.scaled_dot_product_attention(qq, kk, vv)
        return self.out_proj(rearrange(out, "b h t d -> b t (h d)"))


class _TokenGroupNorm(nn.GroupNorm):
    """GroupNorm over ``[B, T, C]`` tokens (demucs' ``MyGroupNorm``)."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


class _Layer(nn.Module):
    """One pre-norm transformer layer, self- (``cross=False``) or cross-attention, with layer scale."""

    def __init__(
        self, dim: int, heads: int, hidden: int, cross: bool, norm_out: bool, layer_scale: bool, gelu: bool
    ) -> None:
        super().__init__()
        self.cross = cross
        attn = _Attention(dim, heads)
        if cross:
            self.cross_attn = attn
        else:
            self.self_attn = attn
        self.linear1 = nn.Linear(dim, hidden)
        self.linear2 = nn.Linear(hidden, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        if cross:
            self.norm3 = nn.LayerNorm(dim)
        self.norm_out = _TokenGroupNorm(1, dim) if norm_out else None
        self.gamma_1 = LayerScale(dim, True) if layer_scale else nn.Identity()
        self.gamma_2 = LayerScale(dim, True) if layer_scale else nn.Identity()
        self.activation = F.gelu if gelu else F.relu

    def forward(self, x: Tensor, other: Tensor | None = None) -> Tensor:
        if self.cross:
            x = x + self.gamma_1(self.cross_attn(self.norm1(x), self.norm2(other)))
            ff_norm = self.norm3
        else:
            h = self.norm1(x)
            x = x + self.gamma_1(self.self_attn(h, h))
            ff_norm = self.norm2
        x = x + self.gamma_2(self.linear2(self.activation(self.linear1(ff_norm(x)))))
        return self.norm_out(x) if self.norm_out is not None else x


def sin_embedding(length: int, dim: int, max_period: float, device=None) -> Tensor:
    """1-D sinusoidal positions ``[length, dim]`` (cosines, then sines)."""
    pos = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    half = dim // 2
    phase = pos / (max_period ** (torch.arange(half, device=device, dtype=torch.float32) / (half - 1)))
    return torch.cat([torch.cos(phase), torch.sin(phase)], dim=-1)


def sin_embedding_2d(dim: int, height: int, width: int, max_period: float, device=None) -> Tensor:
    """2-D sinusoidal positions ``[dim, height, width]``: half the features for the width, half for the height."""
    require(dim % 4 == 0, f"2-D sinusoidal embeddings need a dimension divisible by 4, got {dim}")
    pe = torch.zeros(dim, height, width, device=device)
    half = dim // 2
    div = torch.exp(torch.arange(0.0, half, 2, device=device) * -(math.log(max_period) / half))
    pos_w = torch.arange(0.0, width, device=device)[:, None]
    pos_h = torch.arange(0.0, height, device=device)[:, None]
    pe[0:half:2] = torch.sin(pos_w * div).t()[:, None, :].expand(-1, height, -1)
    pe[1:half:2] = torch.cos(pos_w * div).t()[:, None, :].expand(-1, height, -1)
    pe[half::2] = torch.sin(pos_h * div).t()[:, :, None].expand(-1, -1, width)
    pe[half + 1 :: 2] = torch.cos(pos_h * div).t()[:, :, None].expand(-1, -1, width)
    return pe


class CrossTransformerEncoder(nn.Module):
    """Alternating self- and cross-attention layers over the spectral and temporal token sequences.

    Shape: ``x [B, C, F, T1]``, ``xt [B, C, T2]`` -> the same shapes.
    """

    def __init__(self, dim: int, cfg: HTDemucsConfig) -> None:
        super().__init__()
        require(dim % cfg.t_heads == 0, f"transformer width {dim} must be divisible by t_heads={cfg.t_heads}")
        self.cfg = cfg
        self.classic_parity = 1 if cfg.t_cross_first else 0
        hidden = int(dim * cfg.t_hidden_scale)
        self.norm_in = nn.LayerNorm(dim) if cfg.t_norm_in else nn.Identity()
        self.norm_in_t = nn.LayerNorm(dim) if cfg.t_norm_in else nn.Identity()
        norm_out = cfg.t_norm_out
        kw: dict[str, Any] = dict(
            dim=dim, heads=cfg.t_heads, hidden=hidden, norm_out=norm_out, layer_scale=cfg.t_layer_scale, gelu=cfg.t_gelu
        )
        self.layers = nn.ModuleList(_Layer(cross=i % 2 != self.classic_parity, **kw) for i in range(cfg.t_layers))
        self.layers_t = nn.ModuleList(_Layer(cross=i % 2 != self.classic_parity, **kw) for i in range(cfg.t_layers))

    def forward(self, x: Tensor, xt: Tensor) -> tuple[Tensor, Tensor]:
        cfg = self.cfg
        b, c, fr, t1 = x.shape
        pos2d = rearrange(sin_embedding_2d(c, fr, t1, cfg.t_max_period, x.device), "c f t -> (t f) c")
        x = self.norm_in(rearrange(x, "b c f t -> b (t f) c")) + cfg.t_weight_pos_embed * pos2d
        xt = rearrange(xt, "b c t -> b t c")
        xt = self.norm_in_t(xt) + cfg.t_weight_pos_embed * sin_embedding(xt.shape[1], c, cfg.t_max_period, x.device)
        for layer, layer_t in zip(self.layers, self.layers_t):
            if not layer.cross:
                x, xt = layer(x), layer_t(xt)
            else:
                x, xt = layer(x, xt), layer_t(xt, x)
        return rearrange(x, "b (t f) c -> b c f t", t=t1), rearrange(xt, "b t c -> b c t")


class HTDemucs(SeparationModel):
    """Hybrid Transformer Demucs.

    Shape:
        ``forward``: ``[B, C, T]`` -> ``[B, S, C, T]``.

    Examples:
        >>> cfg = HTDemucsConfig(channels=8, depth=2, bottom_channels=0, t_layers=1, segment=1.0)
        >>> HTDemucs(cfg).eval()(torch.randn(1, 2, 22050)).shape
        torch.Size([1, 4, 2, 22050])
    """

    # convolutions in bf16, the transformer's Linear layers in int8; a smaller overlap moves its output by
    # far more than these (SNR 1 dB against 48 dB with random weights), so it keeps its own (benchmarks/fast_mode.py)
    fast_recipe = FastRecipe(int8_linear=True, bf16=True)

    def __init__(self, config: HTDemucsConfig | None = None) -> None:
        super().__init__()
        cfg = config or HTDemucsConfig()
        hop = cfg.nfft // 4
        self._adopt(cfg, 1)
        self.default_segment = float(cfg.segment)
        self.stft = STFT(cfg.nfft, hop, pad_mode="reflect", normalized=True)
        self.encoder, self.decoder = nn.ModuleList(), nn.ModuleList()
        self.tencoder, self.tdecoder = nn.ModuleList(), nn.ModuleList()
        self.freq_emb = None
        chin, chin_z = cfg.audio_channels, cfg.audio_channels * 2
        chout, chout_z = cfg.channels_time or cfg.channels, cfg.channels
        freqs = cfg.nfft // 2
        dconv_kw = {"compress": cfg.dconv_comp, "depth": cfg.dconv_depth}
        for index in range(cfg.depth):
            norm = index >= cfg.norm_starts
            freq = freqs > 1
            ker, stri, pad, last_freq = cfg.kernel_size, cfg.stride, True, False
            if not freq:
                ker, stri = cfg.time_stride * 2, cfg.time_stride
            if freq and freqs <= cfg.kernel_size:
                ker, pad, last_freq = freqs, False, True
            common: dict[str, Any] = dict(
                norm_groups=cfg.norm_groups, norm=norm, dconv_kw=dconv_kw, rewrite=cfg.rewrite
            )
            if last_freq:
                chout_z = max(chout, chout_z)
                chout = chout_z
            self.encoder.append(
                HEncLayer(
                    chin_z,
                    chout_z,
                    ker,
                    stri,
                    freq=freq,
                    pad=pad,
                    dconv=bool(cfg.dconv_mode & 1),
                    context=cfg.context_enc,
                    **common,
                )
            )
            if freq:
                self.tencoder.append(
                    HEncLayer(
                        chin,
                        chout,
                        cfg.kernel_size,
                        cfg.stride,
                        freq=False,
                        empty=last_freq,
                        dconv=bool(cfg.dconv_mode & 1),
                        context=cfg.context_enc,
                        **common,
                    )
                )
            if index == 0:
                chin = cfg.audio_channels * len(cfg.sources)
                chin_z = chin * 2
            self.decoder.insert(
                0,
                HDecLayer(
                    chout_z,
                    chin_z,
                    ker,
                    stri,
                    freq=freq,
                    pad=pad,
                    dconv=bool(cfg.dconv_mode & 2),
                    last=index == 0,
                    context=cfg.context,
                    **common,
                ),
            )
            if freq:
                self.tdecoder.insert(
                    0,
                    HDecLayer(
                        chout,
                        chin,
                        cfg.kernel_size,
                        cfg.stride,
                        freq=False,
                        empty=last_freq,
                        dconv=bool(cfg.dconv_mode & 2),
                        last=index == 0,
                        context=cfg.context,
                        **common,
                    ),
                )
            chin, chin_z = chout, chout_z
            chout, chout_z = int(cfg.growth * chout), int(cfg.growth * chout_z)
            if freq:
                freqs = 1 if freqs <= cfg.kernel_size else freqs // cfg.stride
            if index == 0 and cfg.freq_emb:
                self.freq_emb = ScaledEmbedding(freqs, chin_z, cfg.emb_scale)
        width = int(cfg.channels * cfg.growth ** (cfg.depth - 1))
        if cfg.bottom_channels:
            self.channel_upsampler = nn.Conv1d(width, cfg.bottom_channels, 1)
            self.channel_downsampler = nn.Conv1d(cfg.bottom_channels, width, 1)
            self.channel_upsampler_t = nn.Conv1d(width, cfg.bottom_channels, 1)
            self.channel_downsampler_t = nn.Conv1d(cfg.bottom_channels, width, 1)
            width = cfg.bottom_channels
        self.crosstransformer = CrossTransformerEncoder(width, cfg) if cfg.t_layers > 0 else None

    @property
    def training_length(self) -> int:
        return int(self.config.segment * self.config.sample_rate)

    def _spec(self, x: Tensor) -> Tensor:
        """Complex spectrogram whose frames line up with the time branch.

        Shape: ``[B, C, T]`` -> ``[B, C, nfft/2, ceil(T/hop)]``.
        """
        hop = self.stft.hop_length
        frames = math.ceil(x.shape[-1] / hop)
        pad = hop // 2 * 3
        x = _pad1d(x, pad, pad + frames * hop - x.shape[-1])
        return self.stft(x)[..., :-1, 2 : 2 + frames]

    def _ispec(self, z: Tensor, length: int) -> Tensor:
        hop = self.stft.hop_length
        z = F.pad(z, (2, 2, 0, 1))
        pad = hop // 2 * 3
        x = self.stft.inverse(z, hop * math.ceil(length / hop) + 2 * pad)
        return x[..., pad : pad + length]

    def forward(self, mix: Tensor) -> Tensor:
        length = mix.shape[-1]
        if self.config.use_train_segment and not self.training and length < self.training_length:
            mix = F.pad(mix, (0, self.training_length - length))  # the reference runs at its training length
        padded_length = mix.shape[-1]
        z = self._spec(mix)
        b, c, fq, t = z.shape
        x = rearrange(torch.view_as_real(z), "b c f t r -> b (c r) f t")
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        std = x.std(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) / (1e-5 + std)
        meant = mix.mean(dim=(1, 2), keepdim=True)
        stdt = mix.std(dim=(1, 2), keepdim=True)
        xt = (mix - meant) / (1e-5 + stdt)

        saved, saved_t, lengths, lengths_t = [], [], [], []
        for idx, encode in enumerate(self.encoder):
            lengths.append(x.shape[-1])
            inject = None
            if idx < len(self.tencoder):
                lengths_t.append(xt.shape[-1])
                tenc = self.tencoder[idx]
                xt = tenc(xt)
                if tenc.empty:
                    inject = xt  # the branches have the same shape from here: merge
                else:
                    saved_t.append(xt)
            x = encode(x, inject)
            if idx == 0 and self.freq_emb is not None:
                emb = self.freq_emb(torch.arange(x.shape[-2], device=x.device)).t()[None, :, :, None]
                x = x + self.config.freq_emb * emb
            saved.append(x)
        if self.crosstransformer is not None:
            if self.config.bottom_channels:
                f = x.shape[2]
                x = rearrange(self.channel_upsampler(rearrange(x, "b c f t -> b c (f t)")), "b c (f t) -> b c f t", f=f)
                xt = self.channel_upsampler_t(xt)
            x, xt = self.crosstransformer(x, xt)
            if self.config.bottom_channels:
                x = rearrange(
                    self.channel_downsampler(rearrange(x, "b c f t -> b c (f t)")), "b c (f t) -> b c f t", f=f
                )
                xt = self.channel_downsampler_t(xt)
        offset = len(self.decoder) - len(self.tdecoder)
        for idx, decode in enumerate(self.decoder):
            x, pre = decode(x, saved.pop(), lengths.pop())
            if idx >= offset:
                tdec = self.tdecoder[idx - offset]
                length_t = lengths_t.pop()
                if tdec.empty:
                    xt, _ = tdec(pre[:, :, 0], None, length_t)
                else:
                    xt, _ = tdec(xt, saved_t.pop(), length_t)

        s = len(self.sources)
        x = x.view(b, s, -1, fq, t) * std[:, None] + mean[:, None]
        zout = torch.view_as_complex(rearrange(x, "b s (c r) f t -> b s c f t r", r=2).contiguous())
        out = self._ispec(zout, padded_length)
        out = out + xt.view(b, s, -1, padded_length) * stdt[:, None] + meant[:, None]
        return out[..., :length]


class HTDemucsBag(SeparationModel):
    """A weighted bag of HTDemucs (``htdemucs_ft``): stem ``s`` is ``sum_k w[k][s] y_k[s] / sum_k w[k][s]``.

    A model whose weights are zero for every stem asked for is not run, so the four-model
    ``htdemucs_ft`` costs one model per stem.

    Shape:
        ``forward``: ``[B, C, T]`` -> ``[B, S, C, T]``.
    """

    weights: Tensor  # buffer: [models, sources]
    fast_recipe = HTDemucs.fast_recipe

    def __init__(self, models: list[HTDemucs], weights: list[list[float]] | None = None) -> None:
        super().__init__()
        first = models[0]
        require(
            all(m.sources == first.sources and m.sample_rate == first.sample_rate for m in models),
            "the models of a bag must share sources and sample rate",
        )
        self.models = nn.ModuleList(models)
        self.sources, self.sample_rate, self.audio_channels = first.sources, first.sample_rate, first.audio_channels
        self.time_quantum = 1
        self.default_segment = min(m.default_segment for m in models)
        w = torch.tensor(
            weights if weights is not None else [[1.0] * len(first.sources)] * len(models), dtype=torch.float32
        )
        require(
            w.shape == (len(models), len(first.sources)), f"bag weights must be [models, sources], got {tuple(w.shape)}"
        )
        require(bool((w.sum(0) > 0).all()), "every source needs a positive weight in some model")
        self.register_buffer("weights", w, persistent=False)

    def forward(self, mix: Tensor) -> Tensor:
        total = torch.zeros((), dtype=mix.dtype, device=mix.device)
        for model, w in zip(self.models, self.weights):
            if not (w > 0).any():
                continue
            total = total + model(mix) * w[:, None, None].to(mix.dtype)
        return total / self.weights.sum(0)[:, None, None].to(mix.dtype)
