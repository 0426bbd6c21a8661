"""demixer: audio source separation (music stems, karaoke, speakers, speech denoising).

Public API::

    import demixer
    stems = demixer.separate("song.wav")                 # {stem: Tensor [C, T]}
    sep = demixer.Separator("hpss", segment=10)
    sep.separate_to_files("song.wav")                    # streamed to separated/hpss/song/*.wav
    demixer.list_models()
"""

from .errors import AudioError, DemixerError, ModelNotFoundError, OptionsError, OutputExistsError  # noqa: E402
from .models import SeparationModel, list_models, load_model  # noqa: E402
from .options import SeparationOptions  # noqa: E402
from .separation import Separator, separate  # noqa: E402
from .version import __version__

__all__ = [
    "AudioError",
    "DemixerError",
    "ModelNotFoundError",
    "OptionsError",
    "OutputExistsError",
    "SeparationModel",
    "SeparationOptions",
    "Separator",
    "__version__",
    "list_models",
    "load_model",
    "separate",
]
