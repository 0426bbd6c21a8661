"""demixer: audio source separation (music stems, karaoke, speakers, speech denoising).

Public API::

    import demixer
    stems = demixer.separate("song.wav")                 # {stem: Tensor [C, T]}
    sep = demixer.Separator("hpss", segment=10)
    sep.separate_to_files("song.wav")                    # streamed to separated/hpss/song/*.wav
    demixer.list_models()
    demixer.clean("talk.mp3", lufs=-16)                  # cleaned/talk/speech.wav, removed/*, report.json
    demixer.verify_record("cleaned/talk/provenance.json")   # after clean(..., provenance=True)
"""

from .cleanup import Cleaner, CleanOptions, clean  # noqa: E402
from .errors import AudioError, DemixerError, ModelNotFoundError, OptionsError, OutputExistsError  # noqa: E402
from .models import SeparationModel, list_models, load_model  # noqa: E402
from .options import SeparationOptions  # noqa: E402
from .provenance import verify_record  # noqa: E402
from .separation import Separator, separate  # noqa: E402
from .version import __version__

__all__ = [
    "AudioError",
    "CleanOptions",
    "Cleaner",
    "DemixerError",
    "ModelNotFoundError",
    "OptionsError",
    "OutputExistsError",
    "SeparationModel",
    "SeparationOptions",
    "Separator",
    "__version__",
    "clean",
    "list_models",
    "load_model",
    "separate",
    "verify_record",
]
