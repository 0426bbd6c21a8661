"""Audio in and out: probing, decoding, resampling, channel policy and atomic writing.

No neural-network code lives here.
"""

from .channels import channel_groups, merge_channels, split_channels
from .io import AUDIO_EXTENSIONS, AudioInfo, iter_blocks, load_audio, probe
from .resample import StreamResampler, resample
from .writer import AudioWriter, OutputFormat, save_audio

__all__ = [
    "AUDIO_EXTENSIONS",
    "AudioInfo",
    "AudioWriter",
    "OutputFormat",
    "StreamResampler",
    "channel_groups",
    "iter_blocks",
    "load_audio",
    "merge_channels",
    "probe",
    "resample",
    "save_audio",
    "split_channels",
]
