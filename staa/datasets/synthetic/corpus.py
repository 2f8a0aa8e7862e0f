"""The built-in synthetic emotional-speech corpus (espeak-ng), a stand-in for real SER data.

Emotions are rendered by prosody rules (pitch level and range, rate, pauses, vocal effort before
normalisation) and voice quality (harsh for anger, breathy for sadness), jittered per clip so that
classes overlap. Clips are loudness-normalised so level is no shortcut, and splits hold out both
voices and sentences. Generation is deterministic: each clip is spoken from a pristine engine state
(`synth_isolated`) with its own seed, so its bytes depend only on the settings and its index.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from scipy.signal import lfilter, resample_poly

from staa.io.atomic import atomic_open, remove_stale_temp_files, write_json
from staa.io.lock import META, FolderLock
from staa.io.validate import check_fields, in_range
from staa.io.workers import stop_pool, worker_pool

log = logging.getLogger(__name__)

CORPUS_VERSION = 1
EMOTIONS = ("neutral", "angry", "happy", "sad")
SPLITS = ("train", "val", "test")
SHARD_SIZE = 100
MAX_CLIPS = 1_000_000

SENTENCES = (
    "The train leaves the station at seven in the morning.",
    "I put the keys on the kitchen table.",
    "We will meet again next week.",
    "She opened the window and looked outside.",
    "The report is due on Friday afternoon.",
    "He bought a new coat in the city.",
    "They walked along the river until dark.",
    "Please send me the letter tomorrow.",
    "The meeting was moved to the second floor.",
    "My brother works at the old factory.",
    "The children are playing in the garden.",
    "It has been raining since last night.",
    "I read the whole book in one day.",
    "The shop closes at nine.",
    "We painted the fence blue last summer.",
    "Your phone is ringing in the other room.",
    "The bus was late again this morning.",
    "He told me the news on the way home.",
    "The dog sleeps under the stairs.",
    "She is moving to another town in May.",
    "Dinner will be ready in ten minutes.",
    "I found the old photographs in a box.",
    "The doctor will see you now.",
    "We drove to the coast on Sunday.",
    "The lights in the hall are still on.",
    "He forgot his bag on the train.",
    "The results came in this afternoon.",
    "They sold the house last year.",
    "The water in the lake is very cold.",
    "I have to call my mother tonight.",
    "The film starts at half past eight.",
    "She wrote her name on the first page.",
    "The road to the village is closed.",
    "We need more chairs for the guests.",
    "The clock on the wall has stopped.",
    "He answered every question on the test.",
    "The garden needs water every day.",
    "Our flight was cancelled this evening.",
    "The new neighbours arrived on Tuesday.",
    "I left the door open for the cat.",
    "The teacher gave us a long list of words.",
    "The boxes are stacked in the garage.",
    "Tomorrow we start work on the bridge.",
    "The soup is on the stove.",
    "She counted the coins twice.",
    "The park is quiet in the early hours.",
    "He keeps his tools in a red box.",
    "The parcel came while you were out.",
)
ACCENTS = ("en-us", "en", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-us-nyc")
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5")


@dataclass(frozen=True)
class EmotionStyle:
    """Mean prosody of one emotion; each clip draws around it (`jitter`), so classes overlap."""

    pitch: float  # offset from the speaker's own pitch, espeak 0-100 scale
    range: float
    rate: float
    wordgap: float  # pauses between words, in 10 ms
    drive: float  # tanh saturation (vocal effort / harshness); 0 for none
    breath: float  # level of breath noise relative to the speech, linear
    tilt: float  # first-order spectral tilt: > 0 brighter, < 0 darker


STYLES = {
    "neutral": EmotionStyle(pitch=0, range=40, rate=170, wordgap=0.5, drive=0.0, breath=0.0, tilt=0.0),
    "angry": EmotionStyle(pitch=12, range=75, rate=175, wordgap=0.5, drive=3.0, breath=0.0, tilt=0.5),
    "happy": EmotionStyle(pitch=28, range=95, rate=172, wordgap=0.5, drive=0.0, breath=0.0, tilt=0.3),
    "sad": EmotionStyle(pitch=-14, range=12, rate=164, wordgap=0.5, drive=0.0, breath=0.12, tilt=-0.6),
}
JITTER = {"pitch": 6.0, "range": 10.0, "rate": 20.0, "wordgap": 1.0}


@dataclass(frozen=True)
class CorpusConfig:
    n_clips: int = 2000
    seed: int = 0
    sample_rate: int = 16_000
    clip_seconds: float | None = 3.0  # None keeps each utterance's own length
    target_dbfs: float = -24.0  # loudness of the speech-active part after normalisation
    split_shares: tuple[float, float, float] = (0.7, 0.15, 0.15)
    version: int = field(default=CORPUS_VERSION)

    def __post_init__(self):
        check_fields(self)
        in_range("n_clips", self.n_clips, 4 * len(SPLITS), MAX_CLIPS)
        if self.n_clips < 4 * len(SPLITS):
            raise ValueError(f"n_clips must be at least {4 * len(SPLITS)}, got {self.n_clips}")
        if self.sample_rate not in (8_000, 16_000, 22_050):
            raise ValueError(f"sample_rate must be 8000, 16000 or 22050, got {self.sample_rate}")
        if self.clip_seconds is not None and not 0.5 <= self.clip_seconds <= 30:
            raise ValueError(f"clip_seconds must be in [0.5, 30], got {self.clip_seconds}")
        if len(self.split_shares) != 3 or abs(sum(self.split_shares) - 1) > 1e-6 or min(self.split_shares) <= 0:
            raise ValueError(f"split_shares must be three positive shares summing to 1, got {self.split_shares}")


@dataclass(frozen=True)
class ClipSpec:
    """Everything needed to render one clip; a row of the manifest."""

    index: int
    path: str
    label: str
    split: str
    speaker: str
    voice: str
    sentence_id: int
    pitch: int
    range: int
    rate: int
    wordgap: int
    drive: float
    breath: float
    tilt: float
    gain_db: float
    offset: float


def _split_items(items, shares, rng) -> dict[str, list]:
    order = list(rng.permutation(len(items)))
    cuts = np.round(np.cumsum(shares) * len(items)).astype(int)
    bounds = [0, *cuts[:-1], len(items)]
    return {s: [items[i] for i in sorted(order[bounds[k] : bounds[k + 1]])] for k, s in enumerate(SPLITS)}


def plan_corpus(cfg: CorpusConfig) -> list[ClipSpec]:
    """Deterministic list of clips: balanced labels, voices and sentences held out per split."""
    rng = np.random.default_rng(cfg.seed)
    speakers = [(a, v) for a in ACCENTS for v in VARIANTS]
    speaker_pitch = {s: float(p) for s, p in zip(speakers, rng.uniform(35, 65, len(speakers)))}
    by_speaker = _split_items(speakers, cfg.split_shares, rng)
    by_sentence = _split_items(list(range(len(SENTENCES))), cfg.split_shares, rng)
    counts = np.round(np.asarray(cfg.split_shares) * cfg.n_clips).astype(int)
    counts[0] = cfg.n_clips - counts[1:].sum()
    specs: list[ClipSpec] = []
    for split, count in zip(SPLITS, counts):
        for k in range(count):
            idx = len(specs)
            r = np.random.default_rng([cfg.seed, idx])
            label = EMOTIONS[k % len(EMOTIONS)]
            style = STYLES[label]
            accent, variant = by_speaker[split][r.integers(len(by_speaker[split]))]
            jit = {key: r.normal(0, s) for key, s in JITTER.items()}
            specs.append(
                ClipSpec(
                    index=idx,
                    path=f"{split}/{idx:06d}_{label}.wav",
                    label=label,
                    split=split,
                    speaker=f"{accent}+{variant}",
                    voice=f"{accent}+{variant}",
                    sentence_id=int(by_sentence[split][r.integers(len(by_sentence[split]))]),
                    pitch=int(np.clip(speaker_pitch[(accent, variant)] + style.pitch + jit["pitch"], 0, 99)),
                    range=int(np.clip(style.range + jit["range"], 0, 100)),
                    rate=int(np.clip(style.rate + jit["rate"], 100, 260)),
                    wordgap=int(np.clip(round(style.wordgap + jit["wordgap"]), 0, 8)),
                    drive=float(max(0.0, style.drive * r.uniform(0.6, 1.4))),
                    breath=float(style.breath * r.uniform(0.6, 1.4)),
                    tilt=float(np.clip(style.tilt + r.normal(0, 0.15), -0.9, 0.9)),
                    gain_db=float(r.uniform(-3, 3)),
                    offset=float(r.uniform(0.0, 0.3)),
                )
            )
    return specs


def _voice_quality(x: np.ndarray, spec: ClipSpec, rng: np.random.Generator, rate: int) -> np.ndarray:
    if spec.drive > 0:
        x = np.tanh(spec.drive * x / (np.max(np.abs(x)) + 1e-9)) / np.tanh(spec.drive)
    if spec.tilt != 0:
        x = lfilter([1.0, -spec.tilt], [1.0], x) if spec.tilt > 0 else lfilter([1.0 + spec.tilt], [1.0, spec.tilt], x)
    if spec.breath > 0:
        frame = rate // 100
        env = np.sqrt(np.convolve(x**2, np.ones(frame) / frame, mode="same"))
        noise = lfilter([1.0], [1.0, -0.6], rng.standard_normal(len(x)))
        x = x + spec.breath * env * noise / (np.std(noise) + 1e-9) * 3.0
    return x


def loudness_normalise(x: np.ndarray, target_dbfs: float, rate: int) -> np.ndarray:
    """Scale so the RMS of the speech-active frames is `target_dbfs`, then keep the peak below 0.95."""
    frame = rate // 50
    n = len(x) // frame
    energy = (x[: n * frame].reshape(n, frame) ** 2).mean(axis=1)
    active = energy > energy.max() * 10 ** (-40 / 10)
    rms = np.sqrt(energy[active].mean()) if active.any() else np.sqrt((x**2).mean())
    y = x * (10 ** (target_dbfs / 20) / max(rms, 1e-9))
    peak = np.max(np.abs(y))
    return y * (0.95 / peak) if peak > 0.95 else y


def render_clip(spec: ClipSpec, cfg: CorpusConfig) -> np.ndarray:
    """Synthesise one clip as float32 at `cfg.sample_rate` (needs the process-wide espeak engine)."""
    from staa.datasets.synthetic.espeak import Espeak, Prosody, synth_isolated

    prosody = Prosody(rate=spec.rate, pitch=spec.pitch, range=spec.range, wordgap=spec.wordgap)
    raw = synth_isolated(SENTENCES[spec.sentence_id], spec.voice, prosody, seed=cfg.seed * 1_000_003 + spec.index)
    rate = Espeak().sample_rate
    rng = np.random.default_rng([cfg.seed, spec.index, 1])
    raw = _voice_quality(raw.astype(np.float64), spec, rng, rate)
    g = np.gcd(cfg.sample_rate, rate)
    x = resample_poly(raw, cfg.sample_rate // g, rate // g)
    x = loudness_normalise(x, cfg.target_dbfs + spec.gain_db, cfg.sample_rate)
    if cfg.clip_seconds is not None:
        length = int(round(cfg.clip_seconds * cfg.sample_rate))
        start = int(spec.offset * cfg.sample_rate)
        out = np.zeros(length)
        piece = x[: max(0, length - start)]
        out[start : start + len(piece)] = piece
        x = out
    return x.astype(np.float32)


def _render_shard(specs: list[ClipSpec], cfg: CorpusConfig, root: str) -> int:
    from staa.io.audio import save_audio

    for spec in specs:
        if not (Path(root) / spec.path).is_file():
            save_audio(Path(root) / spec.path, render_clip(spec, cfg), cfg.sample_rate)
    return len(specs)


def _fingerprint(cfg: CorpusConfig) -> str:
    return hashlib.sha256(json.dumps(asdict(cfg), sort_keys=True).encode()).hexdigest()[:16]


def build_corpus(
    root: str | Path, cfg: CorpusConfig = CorpusConfig(), *, workers: int = 2, progress: bool = True
) -> Path:
    """Generate the corpus under `root` (or reuse it if built with the same settings); returns the manifest path.

    Clips already on disk from an interrupted run are kept (they are written atomically, and each
    clip's bytes do not depend on which clips were rendered before it). One process at a time builds a folder.
    """
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise FileExistsError(f"{root}: exists and is not a folder")
    if root.is_dir() and not (root / "corpus.json").is_file() and any(p.name != META for p in root.iterdir()):
        # before the lock, which would write into it: a user's folder is never written to, nor read as clips
        raise FileExistsError(f"{root}: is not empty and holds no staa-ser corpus; choose a new or empty folder")
    with FolderLock(root, "corpus"):
        return _build(root, cfg, workers, progress)


def _read_info(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, OSError):
        info = None
    if not isinstance(info, dict) or not isinstance(info.get("fingerprint"), str):
        raise FileExistsError(f"{path}: is damaged; choose another folder or delete this one")
    return info


def _check_disk(root: Path, cfg: CorpusConfig) -> None:
    """Refuse a corpus that cannot fit on the disk before any work (16-bit WAV; uncut utterances of ~4 s)."""
    seconds = cfg.clip_seconds or 4.0
    need = cfg.n_clips * (int(seconds * cfg.sample_rate) * 2 + 44 + 200)  # samples, WAV header, manifest row
    free = shutil.disk_usage(root).free
    if need > 0.9 * free:
        raise ValueError(
            f"{root}: {cfg.n_clips} clips need about {need / 1e9:.1f} GB, and the disk has {free / 1e9:.1f} GB free"
        )


def _build(root: Path, cfg: CorpusConfig, workers: int, progress: bool) -> Path:
    from tqdm import tqdm

    manifest = root / "manifest.csv"
    info_path = root / "corpus.json"
    fingerprint = _fingerprint(cfg)
    info = _read_info(info_path)
    if info is not None and info["fingerprint"] != fingerprint:
        # also a partial one: its clips are another seed's or size's, and must not be mixed into this corpus
        raise FileExistsError(f"{root} holds a corpus built with other settings; choose another folder or delete it")
    if info is not None and info.get("complete", True) and manifest.is_file():
        log.info("reusing corpus at %s", root)
        return manifest
    about = {"fingerprint": fingerprint, "config": asdict(cfg), "emotions": list(EMOTIONS)}
    write_json(info_path, {**about, "complete": False})  # before the first clip: a rebuild knows whose clips these are
    if stale := remove_stale_temp_files(root):
        log.info("%s: removed %d temp file(s) left by an interrupted run", root, stale)
    _check_disk(root, cfg)
    specs = plan_corpus(cfg)
    shards = [specs[i : i + SHARD_SIZE] for i in range(0, len(specs), SHARD_SIZE)]
    todo = [s for s in shards if not all((root / c.path).is_file() for c in s)]
    pool = worker_pool(max(1, workers))
    try:
        jobs = [pool.submit(_render_shard, s, cfg, str(root)) for s in todo]
        with tqdm(
            total=len(specs), initial=len(specs) - sum(map(len, todo)), desc="corpus", unit="clip", disable=not progress
        ) as bar:
            for job in jobs:
                bar.update(job.result())
    except BaseException:
        stop_pool(pool)  # Ctrl-C: stop now; the clips written so far are kept, half-written ones go next run
        raise
    pool.shutdown()
    with atomic_open(manifest) as fh:
        writer = csv.DictWriter(fh, fieldnames=list(asdict(specs[0])))
        writer.writeheader()
        writer.writerows(asdict(s) for s in specs)
    write_json(info_path, {**about, "complete": True})
    return manifest
