"""Published speech separators against their reference packages, same random weights, real speech.

- SepFormer vs SpeechBrain 1.1.2's own modules (``Encoder``, ``Dual_Path_Model`` with ``SBTransformerBlock``,
  ``Decoder``), run as ``SepformerSeparation.separate_batch`` runs them. SpeechBrain imports torchaudio,
  which cannot be installed beside CPU torch here (see NOTES); its separation modules never call it, so an
  empty module stands in while the reference is imported. The reference is installed without its
  dependencies by ``scripts/bootstrap.sh``.
- The published file layout (three state dicts) through the manifest's ``speechbrain`` reader.
- The engine's handling of speaker stems: one downmix, and each chunk's speakers put in the order that
  continues the previous chunk.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch

from demixer.models.base import SeparationModel
from demixer.models.sepformer import SepFormer, SepFormerConfig
from demixer.models.speechbrain import state_dict as speechbrain_state_dict
from demixer.separation.chunking import continuing_order, run_chunked

from .conftest import shared

TOL = 1e-4  # of the reference output's peak


@pytest.fixture(scope="module")
def speechbrain():
    sys.modules.setdefault("torchaudio", types.ModuleType("torchaudio"))  # imported by name only, never used
    return pytest.importorskip("speechbrain.lobes.models.dual_path")


def speech(name: str, sr: int, seconds: float) -> np.ndarray:
    """A real utterance at ``sr``, mono float32, ``seconds`` long (looped if shorter)."""
    x, rate = sf.read(shared(f"speech/{name}"), dtype="float32", always_2d=True)
    x = soxr.resample(x.mean(axis=1), rate, sr).astype(np.float32)
    n = int(seconds * sr)
    return np.resize(x, n)


def two_talkers(sr: int, seconds: float) -> tuple[np.ndarray, np.ndarray]:
    a = speech("cmu_arctic/cmu_arctic_us_aew_a0001.flac", sr, seconds)
    b = speech("librispeech/5703-47212-0000.flac", sr, seconds)
    return a / np.abs(a).max() * 0.4, b / np.abs(b).max() * 0.4


def reference_sepformer(sb, speakers: int, filters: int, chunk: int, layers: int, heads: int, ffn: int):
    """SpeechBrain's three modules with random weights, as its hyperparams.yaml builds them."""
    encoder = sb.Encoder(kernel_size=16, out_channels=filters)

    def stack():
        return sb.SBTransformerBlock(
            num_layers=layers,
            d_model=filters,
            nhead=heads,
            d_ffn=ffn,
            dropout=0,
            use_positional_encoding=True,
            norm_before=True,
        )

    masknet = sb.Dual_Path_Model(
        num_spks=speakers,
        in_channels=filters,
        out_channels=filters,
        num_layers=2,
        K=chunk,
        intra_model=stack(),
        inter_model=stack(),
        norm="ln",
        linear_layer_after_inter_intra=False,
        skip_around_intra=True,
    )
    decoder = sb.Decoder(in_channels=filters, out_channels=1, kernel_size=16, stride=8, bias=False)
    torch.manual_seed(speakers)
    for module in (encoder, masknet, decoder):
        for p in module.parameters():  # away from the identity-like initial values, so every weight matters
            p.data.add_(0.05 * torch.randn_like(p))
        module.eval()
    return encoder, masknet, decoder


def separate_batch(encoder, masknet, decoder, mix: torch.Tensor, speakers: int) -> torch.Tensor:
    """``SepformerSeparation.separate_batch`` of SpeechBrain 1.1.2: ``[B, T]`` -> ``[B, T, S]``."""
    w = encoder(mix)
    masks = masknet(w)
    h = torch.stack([w] * speakers) * masks
    est = torch.cat([decoder(h[i]).unsqueeze(-1) for i in range(speakers)], dim=-1)
    if mix.shape[1] > est.shape[1]:
        return torch.nn.functional.pad(est, (0, 0, 0, mix.shape[1] - est.shape[1]))
    return est[:, : mix.shape[1]]


@pytest.mark.parametrize(
    "speakers,filters,chunk,layers,heads,ffn,seconds",
    [
        pytest.param(2, 64, 50, 2, 4, 128, 3.0, id="2spk-small"),
        pytest.param(3, 64, 40, 1, 4, 96, 2.5, id="3spk-small"),
        pytest.param(2, 256, 250, 8, 8, 1024, 3.0, id="published-size", marks=pytest.mark.slow),
    ],
)
def test_sepformer_matches_speechbrain(speechbrain, speakers, filters, chunk, layers, heads, ffn, seconds):
    encoder, masknet, decoder = reference_sepformer(speechbrain, speakers, filters, chunk, layers, heads, ffn)
    cfg = SepFormerConfig(
        sources=tuple(f"speaker{i + 1}" for i in range(speakers)),
        filters=filters,
        chunk=chunk,
        layers=layers,
        heads=heads,
        ffn=ffn,
        mixture_gain=False,
    )
    ours = SepFormer(cfg).eval()
    parts = {"encoder": encoder.state_dict(), "masknet": masknet.state_dict(), "decoder": decoder.state_dict()}
    ours.load_state_dict(speechbrain_state_dict(parts))
    a, b = two_talkers(8000, seconds)
    mix = torch.from_numpy(a + b)[None]
    mix = torch.cat([mix, 0.5 * mix.flip(-1)])  # a batch of two
    with torch.inference_mode():
        ref = separate_batch(encoder, masknet, decoder, mix, speakers).permute(0, 2, 1)
        out = ours(mix[:, None])[:, :, 0]
    assert out.shape == ref.shape == (2, speakers, mix.shape[-1])
    assert (out - ref).abs().max() <= TOL * ref.abs().max()


def write_speechbrain_files(folder: Path, parts: dict) -> dict[str, Path]:
    """The published layout: one plain state dict per module."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for role, module in parts.items():
        paths[role] = folder / f"{role}.ckpt"
        torch.save(module.state_dict(), paths[role])
    return paths


def sepformer_manifest(path: Path, name: str, files: dict[str, Path], config: dict, speakers: int) -> Path:
    entry = {
        "architecture": "sepformer",
        "format": "speechbrain",
        "sources": [f"speaker{i + 1}" for i in range(speakers)],
        "sample_rate": 8000,
        "tasks": ["speakers"],
        "licence": "test",
        "published_score": 10.0,
        "config": config,
        "files": [{"name": p.name, "role": role, "url": p.as_uri()} for role, p in files.items()],
    }
    path.write_text(json.dumps({"models": {name: entry}}))
    return path


def test_speechbrain_files_load_through_the_manifest(speechbrain, tmp_path, monkeypatch):
    from demixer.models.registry import load_model

    encoder, masknet, decoder = reference_sepformer(speechbrain, 2, 64, 50, 2, 4, 128)
    files = write_speechbrain_files(
        tmp_path / "published", {"encoder": encoder, "masknet": masknet, "decoder": decoder}
    )
    config = {"filters": 64, "chunk": 50, "layers": 2, "heads": 4, "ffn": 128, "mixture_gain": False}
    monkeypatch.setenv(
        "DEMIXER_MANIFEST", str(sepformer_manifest(tmp_path / "m.json", "tiny-sepformer", files, config, 2))
    )
    monkeypatch.setenv("DEMIXER_CACHE_DIR", str(tmp_path / "cache"))
    model = load_model("tiny-sepformer", progress=False)
    assert isinstance(model, SepFormer) and model.unordered_sources
    assert (tmp_path / "cache" / "checkpoints" / "tiny-sepformer" / "masknet.ckpt").is_file()
    a, b = two_talkers(8000, 2.0)
    mix = torch.from_numpy(a + b)[None]
    with torch.inference_mode():
        ref = separate_batch(encoder, masknet, decoder, mix, 2).permute(0, 2, 1)
        assert (model(mix[:, None])[:, :, 0] - ref).abs().max() <= TOL * ref.abs().max()


def test_wrong_speechbrain_settings_are_named(speechbrain, tmp_path, monkeypatch):
    from demixer.errors import ModelNotFoundError
    from demixer.models.registry import load_model

    encoder, masknet, decoder = reference_sepformer(speechbrain, 2, 64, 50, 2, 4, 128)
    files = write_speechbrain_files(
        tmp_path / "published", {"encoder": encoder, "masknet": masknet, "decoder": decoder}
    )
    wrong = {"filters": 64, "chunk": 50, "layers": 3, "heads": 4, "ffn": 128}  # one transformer layer too many
    monkeypatch.setenv(
        "DEMIXER_MANIFEST", str(sepformer_manifest(tmp_path / "m.json", "bad-sepformer", files, wrong, 2))
    )
    monkeypatch.setenv("DEMIXER_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(ModelNotFoundError, match="do not fit the SepFormer"):
        load_model("bad-sepformer", progress=False)


class ShuffledTalkers(SeparationModel):
    """Gives the true talkers of each chunk in a random order, as a speaker separator may.

    The test's reader tells it where each chunk starts (``starts``), in the order the engine reads them.
    """

    sources = ("speaker1", "speaker2")
    sample_rate = 8000
    audio_channels = 1
    unordered_sources = True
    default_segment = 1.0

    def __init__(self, talkers: np.ndarray) -> None:
        super().__init__()
        self.talkers = talkers  # [2, T]
        self.starts: list[int] = []
        self.calls = 0
        self.rng = np.random.default_rng(0)

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        out = []
        for x in mix:
            start = self.starts[self.calls]
            self.calls += 1
            chunk = self.talkers[:, start : start + x.shape[-1]][self.rng.permutation(2)]
            out.append(torch.from_numpy(chunk.copy())[:, None])
        return torch.stack(out)


def test_speakers_keep_their_stem_across_chunks_and_channels():
    a, b = two_talkers(8000, 6.0)
    talkers = np.stack([a, b])
    model = ShuffledTalkers(talkers)
    stereo = np.stack([a + b, 0.5 * (a + b)])

    def read(start: int, length: int) -> np.ndarray:
        model.starts.append(start)
        return stereo[:, start : start + length]

    blocks = []
    run_chunked(model, read, stereo.shape[1], 2, lambda block: blocks.append(block.copy()), overlap=0.25)
    out = np.concatenate(blocks, axis=-1)  # [S, C, T]
    assert model.calls > 4 and out.shape == (2, 2, stereo.shape[1])
    assert np.array_equal(out[:, 0], out[:, 1])  # one downmix: each stem holds one talker in every channel
    first = int(np.argmax([abs(np.dot(out[0, 0], t)) for t in talkers]))
    assert np.abs(out[0, 0] - talkers[first]).max() < 1e-5  # the same talker from start to end
    assert np.abs(out[1, 0] - talkers[1 - first]).max() < 1e-5


def test_continuing_order_matches_the_shared_samples():
    rng = np.random.default_rng(1)
    s = rng.standard_normal((3, 1, 1000)).astype(np.float32)
    previous = (0, s[:, :, :600])
    current = (400, s[[2, 0, 1], :, 400:])  # the same three talkers, shuffled
    assert continuing_order(previous, current) == [1, 2, 0]
    assert continuing_order((0, s[:, :, :300]), current) == [0, 1, 2]  # nothing shared: order kept


@pytest.fixture(scope="module")
def asteroid():
    sys.modules.setdefault("torchaudio", types.ModuleType("torchaudio"))  # imported by name only, never used
    return pytest.importorskip("asteroid.models")


def asteroid_package(
    asteroid, mask_act: str, encoder_activation: str | None, model_name: str = "ConvTasNet", **sizes
) -> tuple[torch.nn.Module, dict]:
    """An Asteroid model with random weights and the package ``BaseModel.serialize`` writes (without its
    ``infos``, which need pytorch_lightning)."""
    torch.manual_seed(3)
    cls = getattr(asteroid, model_name)
    model = cls(n_src=2, mask_act=mask_act, encoder_activation=encoder_activation, **sizes).eval()
    for p in model.parameters():
        p.data.add_(0.05 * torch.randn_like(p))
    package = {"model_name": model_name, "state_dict": model.state_dict(), "model_args": model.get_model_args()}
    return model, package


@pytest.mark.parametrize(
    "model_name,mask_act,encoder_activation,sizes",
    [
        (
            "ConvTasNet",
            "relu",
            None,
            dict(n_blocks=3, n_repeats=2, bn_chan=32, hid_chan=64, skip_chan=32, n_filters=64),
        ),
        ("ConvTasNet", "sigmoid", "relu", dict(n_blocks=2, n_repeats=1, bn_chan=16, hid_chan=32, skip_chan=16)),
        pytest.param("ConvTasNet", "relu", None, {}, marks=pytest.mark.slow),  # the published Libri2Mix sizes
        ("DPRNNTasNet", "sigmoid", None, dict(n_repeats=2, bn_chan=32, hid_size=24, chunk_size=30, n_filters=32)),
        (
            "DPRNNTasNet",
            "relu",
            "relu",
            dict(n_repeats=1, bn_chan=16, hid_size=16, chunk_size=20, hop_size=7, bidirectional=False),
        ),
        # the published WHAM! model's sizes: 64 filters of 2 samples at stride 1, chunks of 250 every 125
        pytest.param(
            "DPRNNTasNet",
            "sigmoid",
            None,
            dict(n_filters=64, kernel_size=2, stride=1, chunk_size=250, hop_size=125),
            marks=pytest.mark.slow,
        ),
    ],
    ids=[
        "tcn-relu-small",
        "tcn-sigmoid-small",
        "tcn-published-size",
        "dprnn-small",
        "dprnn-uni",
        "dprnn-published-size",
    ],
)
def test_asteroid_models_match_reference(asteroid, tmp_path, model_name, mask_act, encoder_activation, sizes):
    from demixer.models.convtasnet import ConvTasNet
    from demixer.models.dprnn import DPRNNTasNet
    from demixer.models.published import build_asteroid

    reference, package = asteroid_package(asteroid, mask_act, encoder_activation, model_name, **sizes)
    path = tmp_path / "pytorch_model.bin"
    torch.save(package, path)
    ours = build_asteroid(("speaker1", "speaker2"), 8000, path)
    assert isinstance(ours, {"ConvTasNet": ConvTasNet, "DPRNNTasNet": DPRNNTasNet}[model_name])
    ours.config.mixture_gain = False  # the reference's raw outputs
    a, b = two_talkers(8000, 1.5 if sizes.get("stride") == 1 else 3.0)
    mix = torch.from_numpy(a + b)[None, None, :-3]  # not a whole number of strides
    mix = torch.cat([mix, 0.3 * mix.flip(-1)])
    with torch.inference_mode():
        ref = reference(mix)
        out = ours(mix)[:, :, 0]
    assert out.shape == ref.shape
    assert (out - ref).abs().max() <= TOL * ref.abs().max()


def test_unsupported_asteroid_package_is_named(asteroid, tmp_path):
    from demixer.errors import ModelNotFoundError
    from demixer.models.published import build_asteroid

    _, package = asteroid_package(
        asteroid, "relu", None, n_blocks=2, n_repeats=1, bn_chan=16, hid_chan=32, skip_chan=16
    )
    package["model_args"]["norm_type"] = "cLN"
    torch.save(package, tmp_path / "m.bin")
    with pytest.raises(ModelNotFoundError, match="norm_type='cLN' is not supported"):
        build_asteroid(("speaker1", "speaker2"), 8000, tmp_path / "m.bin")
    torch.save({**package, "model_name": "DPTNet"}, tmp_path / "d.bin")
    with pytest.raises(ModelNotFoundError, match="DPTNet is not supported"):
        build_asteroid(("speaker1", "speaker2"), 8000, tmp_path / "d.bin")


def _tiny_published(kind: str, folder: Path, speechbrain_mod, asteroid_mod) -> dict:
    """A published-style model with random weights (files plus its manifest entry, file:// URLs)."""
    if kind == "asteroid":
        _, package = asteroid_package(
            asteroid_mod, "relu", None, n_blocks=2, n_repeats=1, bn_chan=16, hid_chan=32, skip_chan=16, n_filters=32
        )
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(package, folder / "pytorch_model.bin")
        files = [{"name": "pytorch_model.bin", "url": (folder / "pytorch_model.bin").as_uri()}]
        return {"architecture": "convtasnet", "format": "asteroid", "sources": ["speaker1", "speaker2"],
                "sample_rate": 8000, "tasks": ["speakers"], "files": files}  # fmt: skip
    speakers = {"sepformer2": 2, "sepformer3": 3, "enhancement": 1}[kind]
    modules = reference_sepformer(speechbrain_mod, speakers, 32, 20, 1, 2, 64)
    paths = write_speechbrain_files(folder, dict(zip(("encoder", "masknet", "decoder"), modules)))
    entry = {
        "architecture": "sepformer",
        "format": "speechbrain",
        "sources": [f"speaker{i + 1}" for i in range(speakers)] if speakers > 1 else ["speech"],
        "sample_rate": 8000 if speakers > 1 else 16000,
        "tasks": ["speakers"] if speakers > 1 else ["denoise"],
        "config": {"filters": 32, "chunk": 20, "layers": 1, "heads": 2, "ffn": 64},
        "files": [{"name": p.name, "role": role, "url": p.as_uri()} for role, p in paths.items()],
    }
    if speakers == 1:
        entry["residual"] = "noise"
    return entry


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sepformer2", "sepformer3", "asteroid", "enhancement"])
def test_published_speech_model_downloads_and_runs_everywhere(kind, speechbrain, asteroid, tmp_path, monkeypatch):
    """Download (file://), verify, then separate, evaluate, batch and serve with the cached model."""
    import httpx

    from .conftest import run_cli
    from .test_serving import Server, submit, wait_done

    entry = _tiny_published(kind, tmp_path / "published", speechbrain, asteroid)
    name = f"tiny-{kind}"
    (tmp_path / "m.json").write_text(
        json.dumps({"models": {name: {**entry, "licence": "test", "published_score": 1.0}}})
    )
    monkeypatch.setenv("DEMIXER_MANIFEST", str(tmp_path / "m.json"))
    monkeypatch.setenv("DEMIXER_CACHE_DIR", str(tmp_path / "cache"))
    r = run_cli("models", "download", name, "--no-progress")
    assert r.returncode == 0 and f"{len(entry['files'])} file(s) verified" in r.stdout, r.stderr
    assert run_cli("models", "verify", name).returncode == 0

    # a stereo 16 kHz recording: stems come back stereo at 16 kHz, whatever the model's rate
    a, b = two_talkers(16000, 3.0)
    stereo = np.stack([a + 0.5 * b, 0.5 * a + b], axis=1)
    sf.write(tmp_path / "talk.wav", stereo, 16000)
    r = run_cli("--offline", "separate", "-n", name, "-o", tmp_path / "out", tmp_path / "talk.wav")
    assert r.returncode == 0, r.stderr
    outputs = entry["sources"] + ([entry["residual"]] if "residual" in entry else [])
    written = {p.stem: sf.read(p) for p in (tmp_path / "out" / name / "talk").glob("*.wav")}
    assert set(written) == set(outputs)
    assert all(x.shape == stereo.shape and rate == 16000 for x, rate in written.values())

    # evaluate on a dataset of its kind, batch over a folder
    data = tmp_path / "data"
    if entry["tasks"] == ["denoise"]:
        dataset = shared("denoising_pairs/valentini_p287")
    else:
        talkers = [speech(f"librispeech_rtvc/{n}_00000.flac", 8000, 2.0) for n in (1320, 3575, 6829)]
        for i in range(len(entry["sources"])):
            (data / f"s{i + 1}").mkdir(parents=True)
            sf.write(data / f"s{i + 1}" / "m0.wav", talkers[i], 8000)
        (data / "mix_clean").mkdir()
        sf.write(data / "mix_clean" / "m0.wav", sum(talkers[: len(entry["sources"])]), 8000)
        dataset = data
    r = run_cli("--offline", "evaluate", "-n", name, dataset, "-o", tmp_path / "eval", "--no-progress", "--no-html")
    assert r.returncode == 0, r.stderr
    assert any(line.startswith(name) for line in r.stdout.splitlines()), r.stdout
    (tmp_path / "in").mkdir()
    sf.write(tmp_path / "in" / "one.wav", stereo[:16000], 16000)
    sf.write(tmp_path / "in" / "two.flac", stereo[16000:], 16000)
    r = run_cli("--offline", "batch", tmp_path / "in", "-o", tmp_path / "batch", "-n", name, "--no-progress")
    assert r.returncode == 0 and "2 separated" in r.stdout, r.stdout + r.stderr

    # the service offers the cached model and, for its task, makes it the default (best cached score)
    server = Server(tmp_path / "serve").start()
    try:
        listed = {m["name"]: m for m in httpx.get(f"{server.url}/models", timeout=10).json()}
        assert listed[name]["published_score"] == 1.0 and listed[name]["default_for"] == entry["tasks"]
        fields = {"task": entry["tasks"][0]} if kind != "sepformer3" else {"task": "speakers", "speakers": 3}
        job = wait_done(server, submit(server, tmp_path / "talk.wav", **fields).json()["id"], timeout=180)
        assert job["state"] == "done" and job["model"] == name and job["stems"] == outputs, job
        if kind == "sepformer2":  # the page's Model menu shows the published score and the default
            menu = page_model_menu(server.url, "speakers")
            assert f"{name} (speaker1, speaker2, published 1 dB) — default" in menu, menu
    finally:
        server.stop()


def page_model_menu(url: str, task: str) -> str:
    """The text of the web page's Model menu with ``task`` chosen, in headless Chromium."""
    from playwright.sync_api import sync_playwright

    from .test_serving import CHROMIUM

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.goto(url)
            page.wait_for_selector("#model optgroup", state="attached")
            page.check(f"input[name=task][value={task}]")
            return page.inner_text("#model")
        finally:
            browser.close()


def test_shipped_manifest_lists_the_speech_checkpoints():
    from demixer.pretrained import load_manifest

    manifest = load_manifest()
    expected = {
        "sepformer-wsj02mix": ("speechbrain", 2, 22.4),
        "sepformer-libri2mix": ("speechbrain", 2, 20.6),
        "sepformer-libri3mix": ("speechbrain", 3, 19.0),
        "sepformer-whamr": ("speechbrain", 2, 13.7),
        "convtasnet-libri2mix-sepclean-8k": ("asteroid", 2, 14.76),
        "dprnn-wham-sepclean-ks2": ("asteroid", 2, 19.32),
    }
    for name, (fmt, speakers, score) in expected.items():
        entry = manifest[name]
        assert entry.format == fmt and entry.sources == tuple(f"speaker{i + 1}" for i in range(speakers))
        assert entry.sample_rate == 8000 and entry.tasks == ("speakers",) and entry.published_score == score
        assert entry.licence and all(f.url.startswith("https://huggingface.co/") for f in entry.files)
        if fmt == "speechbrain":
            assert sorted(f.role for f in entry.files) == ["decoder", "encoder", "masknet"]
    enhancement = manifest["sepformer-dns4-16k-enhancement"]
    assert enhancement.output_sources == ("speech", "noise") and enhancement.sample_rate == 16000
    assert enhancement.published_score is None  # never chosen as a default on its own
