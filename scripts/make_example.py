"""Render the bundled example song to src/demixer/examples/example.flac (16-bit, 44.1 kHz stereo)."""

from pathlib import Path

from demixer.audio import OutputFormat, save_audio
from demixer.data import make_example

stems = make_example()
out = Path(__file__).resolve().parents[1] / "src" / "demixer" / "examples" / "example.flac"
save_audio(out, sum(stems.values()), 44100, OutputFormat("flac", "int16"))
print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")
