"""Asteroid's model packages (what ``BaseModel.serialize`` writes: ``model_name``, ``model_args``,
``state_dict``) as demixer models: :class:`~demixer.models.convtasnet.ConvTasNet` for ``ConvTasNet``,
:class:`~demixer.models.dprnn.DPRNNTasNet` for ``DPRNNTasNet``.

The package's ``model_args`` carry the settings; settings demixer does not implement are refused by name.
State-dict keys are renamed to demixer's module names (gLN scales reshaped to ``[1, C, 1]``).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from ..errors import require
from .base import SeparationModel
from .checkpoint import renamed

_FILTERBANKS = (
    (r"^encoder\.filterbank\._filters$", "encoder.weight"),
    (r"^decoder\.filterbank\._filters$", "decoder.weight"),
    (r"^masker\.bottleneck\.0\.", "norm."),
    (r"^masker\.bottleneck\.1\.", "bottleneck."),
)
RENAMES = {
    "ConvTasNet": _FILTERBANKS
    + (
        (r"^masker\.TCN\.(\d+)\.shared_block\.0\.", r"tcn.\1.inp."),
        (r"^masker\.TCN\.(\d+)\.shared_block\.1\.", r"tcn.\1.act1."),
        (r"^masker\.TCN\.(\d+)\.shared_block\.2\.", r"tcn.\1.norm1."),
        (r"^masker\.TCN\.(\d+)\.shared_block\.3\.", r"tcn.\1.depthwise."),
        (r"^masker\.TCN\.(\d+)\.shared_block\.4\.", r"tcn.\1.act2."),
        (r"^masker\.TCN\.(\d+)\.shared_block\.5\.", r"tcn.\1.norm2."),
        (r"^masker\.TCN\.(\d+)\.res_conv\.", r"tcn.\1.res."),
        (r"^masker\.TCN\.(\d+)\.skip_conv\.", r"tcn.\1.skip."),
        (r"^masker\.mask_net\.", "mask."),
    ),
    "DPRNNTasNet": _FILTERBANKS
    + (
        (r"^masker\.net\.(\d+)\.(intra|inter)_RNN\.rnn\.", r"blocks.\1.\2_rnn."),
        (r"^masker\.net\.(\d+)\.(intra|inter)_(linear|norm)\.", r"blocks.\1.\2_\3."),
        (r"^masker\.first_out\.0\.", "prelu."),
        (r"^masker\.first_out\.1\.", "to_speakers."),
        (r"^masker\.net_out\.0\.", "output."),
        (r"^masker\.net_gate\.0\.", "output_gate."),
        (r"^masker\.mask_net\.", "to_mask."),
    ),
}

#: Settings every supported package must have (the first value is Asteroid's default when a key is absent).
_COMMON = {
    "fb_name": ("FreeFB", "free"),
    "norm_type": ("gLN",),
    "mask_act": ("sigmoid", "relu"),
    "encoder_activation": (None, "linear", "relu"),
}
_SPECIFIC: dict[str, dict[str, tuple]] = {
    "ConvTasNet": {"causal": (False,)},
    "DPRNNTasNet": {"rnn_type": ("LSTM", "lstm"), "num_layers": (1,), "use_mulcat": (False,)},
}


def model_from_package(package: Any, sample_rate: int, sources: tuple[str, ...]) -> SeparationModel:
    """The demixer model of an Asteroid package (its weights loaded by the caller: see :func:`state_dict`).

    Raises:
        ConfigError: a model or setting demixer does not implement, or a source count unlike ``sources``.
    """
    name = package["model_name"]
    require(name in RENAMES, f"Asteroid {name} is not supported ({', '.join(RENAMES)} are)")
    args = dict(package["model_args"])
    for key, allowed in {**_COMMON, **_SPECIFIC[name]}.items():
        value = args.get(key, allowed[0])
        require(value in allowed, f"Asteroid {name} with {key}={value!r} is not supported")
    require(
        int(args.get("n_src", len(sources))) == len(sources), "the package's n_src differs from the manifest's stems"
    )
    require(
        (args.get("out_chan") or args["n_filters"]) == args["n_filters"], f"Asteroid {name} needs out_chan == n_filters"
    )
    shared = dict(
        sources=tuple(sources),
        sample_rate=sample_rate,
        filters=int(args["n_filters"]),
        kernel=int(args["kernel_size"]),
        bottleneck=int(args["bn_chan"]),
        mask_activation=args.get("mask_act", "sigmoid"),
        encoder_activation=args.get("encoder_activation") or "linear",
    )
    if name == "ConvTasNet":
        from .convtasnet import ConvTasNet, ConvTasNetConfig

        require(args.get("skip_chan") == args.get("bn_chan"), "Asteroid ConvTasNet needs skip_chan == bn_chan here")
        require(args["stride"] == args["kernel_size"] // 2, "Asteroid ConvTasNet needs stride == kernel_size / 2 here")
        return ConvTasNet(
            ConvTasNetConfig(
                **shared,
                hidden=int(args["hid_chan"]),
                conv_kernel=int(args["conv_kernel_size"]),
                blocks=int(args["n_blocks"]),
                repeats=int(args["n_repeats"]),
                pad_edges=False,
            )
        )
    from .dprnn import DPRNNConfig, DPRNNTasNet

    return DPRNNTasNet(
        DPRNNConfig(
            **shared,
            stride=int(args["stride"]),
            hidden=int(args["hid_size"]),
            chunk=int(args["chunk_size"]),
            hop=int(args.get("hop_size") or args["chunk_size"] // 2),
            repeats=int(args["n_repeats"]),
            bidirectional=bool(args.get("bidirectional", True)),
        )
    )


def state_dict(model_name: str, state: dict[str, Tensor]) -> dict[str, Tensor]:
    """An Asteroid state dict under demixer's module names."""
    out = {}
    for key, value in state.items():
        name = renamed(key, RENAMES[model_name])
        out[name] = value.reshape(1, -1, 1) if name.endswith((".gamma", ".beta")) else value
    return out
