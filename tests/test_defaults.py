"""The default model per task, offline: the user's choice, else the best published model already in the cache,
else the shipped one; and the hint line naming a better model to download.

A fake cache is made by putting files where the store looks for a published model's files: the choice reads
only whether they are there (nothing is loaded, nothing downloaded).
"""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from demixer.errors import ModelNotFoundError, OptionsError
from demixer.models.defaults import set_user_default
from demixer.models.registry import choose_default, describe_models, task_defaults
from demixer.pretrained import load_manifest, model_dir

from .conftest import run_cli


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DEMIXER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("DEMIXER_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("DEMIXER_OFFLINE", "1")  # nothing here may reach the network

    def put(name: str) -> None:
        entry = load_manifest()[name]
        folder = model_dir(entry)
        folder.mkdir(parents=True, exist_ok=True)
        for spec in entry.files:
            (folder / spec.name).write_bytes(b"not read by the choice")

    return put


def test_shipped_model_when_nothing_is_cached_with_a_hint(cache):
    choice = choose_default("speakers")
    assert choice.name == "demixer-2spk" and "ships with demixer" in choice.reason
    # the best scored published speaker model is named, with how to get it
    assert choice.hint is not None and "sepformer-wsj02mix" in choice.hint
    assert "demixer models download sepformer-wsj02mix" in choice.hint


def test_best_cached_published_model_wins_by_published_score(cache):
    cache("convtasnet-libri2mix-sepclean-8k")
    cache("sepformer-libri2mix")
    choice = choose_default("speakers")
    assert choice.name == "sepformer-libri2mix"  # 20.6 dB beats 14.76 dB
    assert "best published model in the cache" in choice.reason and "20.6" in choice.reason
    assert choice.hint is not None and "sepformer-wsj02mix" in choice.hint  # 22.4 dB, not cached
    cache("sepformer-wsj02mix")
    choice = choose_default("speakers")
    assert choice.name == "sepformer-wsj02mix" and choice.hint is None
    assert task_defaults()["speakers"] == "sepformer-wsj02mix"
    rows = {r["name"]: r for r in describe_models()}
    assert rows["sepformer-wsj02mix"]["default_for"] == ["speakers"] and rows["demixer-2spk"]["default_for"] == []


def test_a_partly_cached_model_is_not_chosen(cache):
    cache("sepformer-wsj02mix")
    entry = load_manifest()["sepformer-wsj02mix"]
    (model_dir(entry) / "masknet.ckpt").unlink()
    assert choose_default("speakers").name == "demixer-2spk"


def test_unscored_published_models_are_never_chosen_on_their_own(cache):
    cache("sepformer-dns4-16k-enhancement")  # no published score in the manifest
    assert choose_default("denoise").name == task_defaults()["denoise"] != "sepformer-dns4-16k-enhancement"


def test_music_and_karaoke_rank_their_own_published_models(cache):
    cache("htdemucs")
    assert choose_default("music").name == "htdemucs"
    assert choose_default("music").hint is not None and "htdemucs_ft" in choose_default("music").hint
    cache("htdemucs_ft")
    assert choose_default("music").name == "htdemucs_ft"
    assert choose_default("music", two_stems="vocals").task == "karaoke"


def test_the_users_choice_comes_first_and_can_be_cleared(cache):
    cache("sepformer-wsj02mix")
    path = set_user_default("speakers", "convtasnet-libri2mix-sepclean-8k")
    choice = choose_default("speakers")
    assert choice.name == "convtasnet-libri2mix-sepclean-8k" and str(path) in choice.reason
    set_user_default("speakers", None)
    assert choose_default("speakers").name == "sepformer-wsj02mix"
    path.write_text("[1, 2]")
    with pytest.raises(OptionsError, match="defaults.json"):
        choose_default("speakers")


def test_speaker_count_chooses_among_models_of_that_count(cache):
    cache("sepformer-wsj02mix")
    assert choose_default("speakers", speakers=2).name == "sepformer-wsj02mix"
    with pytest.raises(ModelNotFoundError, match="demixer models download sepformer-libri3mix"):
        choose_default("speakers", speakers=3)  # the shipped model separates 2
    cache("sepformer-libri3mix")
    assert choose_default("speakers", speakers=3).name == "sepformer-libri3mix"
    assert choose_default("speakers").name == "sepformer-wsj02mix"  # the count is not guessed
    with pytest.raises(OptionsError, match="only for --task speakers"):
        choose_default("music", speakers=2)


def test_named_model_must_have_the_asked_speaker_count(cache):
    from demixer.separation.separator import Separator

    with pytest.raises(OptionsError, match="--speakers 3: demixer-2spk separates 2 talkers"):
        Separator("demixer-2spk", task="speakers", speakers=3)


@pytest.mark.slow
def test_hint_line_in_separate_and_quiet_hides_it(tmp_path):
    rng = np.random.default_rng(0)
    sf.write(tmp_path / "talk.wav", (0.1 * rng.standard_normal(8000)).astype(np.float32), 8000)
    env_dirs = ("--offline",)
    r = run_cli(*env_dirs, "separate", "--task", "speakers", "-o", str(tmp_path / "out"), str(tmp_path / "talk.wav"))
    assert r.returncode == 0, r.stderr
    hints = [line for line in r.stderr.splitlines() if line.startswith("hint:")]
    assert len(hints) == 1 and "demixer models download sepformer-wsj02mix" in hints[0]
    r = run_cli(
        *env_dirs,
        "-q",
        "separate",
        "--task",
        "speakers",
        "-o",
        str(tmp_path / "q"),
        "--overwrite",
        str(tmp_path / "talk.wav"),
    )
    assert r.returncode == 0, r.stderr
    assert "hint:" not in r.stderr
    listing = run_cli("models", "list").stdout
    assert "speakers  demixer-2spk" in listing and "ships with demixer" in listing
