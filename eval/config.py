"""The evaluation grid, from a TOML file or from flags: victims x attacks x defenses on one dataset split.

data = "runs/demo/corpus/manifest.csv"      # a dataset root, or a manifest CSV
dataset = "manifest"                        # iemocap, emodb, ravdess, cremad, demos, emobox, hf or manifest
# folds = "EmoBox/data/iemocap"              # emobox: the fold set (label_map.json, fold_K/), and which fold
# fold = 1
split = "test"
max_clips = 200
defenses = ["none", "mp3:32", "resample:8000"]
eps = [0.002, 0.03]                         # one budget, or a list: a security curve (attacks named NAME@EPS)
# snr = [40, 30]                            # or per-clip budgets as an SNR in dB (attacks named NAME@30dB)
clip_seconds = 3.0                          # 0: each clip at its own length

[victims]
emo18 = "runs/victims/emo18/best.pt"

[attacks]                                   # NAME = an attack spec (staa.attacks.registry), or a table
staa = "staa:generator=runs/attacks/emo18/best.pt"
pgd10 = "pgd:steps=10"
bpda_pgd10 = { type = "adaptive_pgd", steps = 10, eot = 4 }   # run through each defense (BPDA/EOT)
std = "standard"                            # APGD-CE, APGD-T, Square: the worst case, adaptive through each defense

# detectors = ["quantize:8", "resample:8000"]   # detection by transform consistency, each named by its transform
# smoothing_sigmas = [0.002, 0.005]             # randomized smoothing: certified accuracy per radius
"""

from __future__ import annotations

import tomllib
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path

from staa.attacks.registry import parse_attack, takes_snr
from staa.attacks.snr_budget import SNR_RANGE
from staa.io.validate import check_fields, in_range

DEFAULT_EPS = (0.002, 0.03)


@dataclass
class EvalConfig:
    data: str
    victims: dict
    attacks: dict
    defenses: list = field(default_factory=lambda: ["none"])
    dataset: str = "manifest"
    folds: str | None = None  # emobox: the folder of label_map.json and fold_K/
    fold: int = 1
    split: str = "test"
    classes: list | None = None
    max_clips: int | None = 200
    clip_seconds: float = 3.0  # 0: each clip at its own length
    strict_rate: bool = False  # refuse audio at another rate than the victim's instead of resampling it
    batch_size: int = 16
    # l-inf budget of the gradient attacks that set none; a list runs each of them at every budget (a security curve),
    # as NAME@EPS. The default pairs the paper's 0.03 (clearly audible: PESQ 1.4-2.1) with 0.002, the budget audio
    # attack suites use.
    eps: float | list[float] = field(default_factory=lambda: list(DEFAULT_EPS))
    # or a budget per clip as an SNR in dB (eps = RMS(clip) * 10^(-snr/20)) for every l-inf attack made at run time
    # that sets no budget of its own; a list makes a curve (NAME@30dB, ...). Generators keep their trained eps.
    snr: float | list[float] | None = None
    seed: int = 0
    perceptual: bool = True  # PESQ / STOI / ESTOI (the slow part)
    perceptual_clips: int | None = None  # score them on a seeded sample of this many clips (the same for every attack)
    workers: int | None = None
    examples: int = 2  # clips per victim x attack kept as WAV examples for the report
    skip_bad: bool = False  # skip (and count) unusable audio files instead of stopping
    # detectors by transform consistency (defenses.detection), each named by its transform's defense spec: per victim,
    # ROC-AUC and detection at `detector_fpr` against the grid's attacks on the grid's clips, thresholds calibrated on
    # clean clips of `detector_split`, then a detector-aware PGD of `detector_steps` steps at the first budget
    detectors: list[str] = field(default_factory=list)
    detector_fpr: float = 0.05
    detector_split: str = "val"
    detector_steps: int = 50
    # randomized smoothing (staa.models.smoothing): per victim and noise level, certified accuracy at each l2 radius on
    # the grid's clips (Cohen et al.: n0 draws pick the class, n bound it, the certificate fails with chance alpha)
    smoothing_sigmas: list[float] = field(default_factory=list)
    smoothing_radii: list[float] = field(default_factory=lambda: [0.0, 0.001, 0.002, 0.005])
    smoothing_n: int = 200
    smoothing_n0: int = 20
    smoothing_alpha: float = 0.001

    def __post_init__(self):
        from defenses import parse_defense
        from defenses.detection import parse_detector

        check_fields(self)
        for what in ("victims", "attacks"):
            for key, value in getattr(self, what).items():
                if not isinstance(value, (str, dict)):
                    raise ValueError(f"{what}.{key} must be a string, got {value!r}")
        if not self.victims:
            raise ValueError("the grid needs at least one victim (name = checkpoint path)")
        if not self.attacks:
            raise ValueError("the grid needs at least one attack")
        self.budgets = [self.eps] if isinstance(self.eps, (int, float)) else list(self.eps)
        if not self.budgets or len(set(self.budgets)) != len(self.budgets):
            raise ValueError(f"eps must be a number or a list of distinct numbers, got {self.eps!r}")
        for e in self.budgets:
            in_range("eps", e, 1e-6, 1.0)
        self.snr_budgets = (
            [] if self.snr is None else [self.snr] if isinstance(self.snr, (int, float)) else list(self.snr)
        )
        if self.snr is not None and (not self.snr_budgets or len(set(self.snr_budgets)) != len(self.snr_budgets)):
            raise ValueError(f"snr must be a number or a list of distinct numbers, got {self.snr!r}")
        for db in self.snr_budgets:
            in_range("snr", db, SNR_RANGE[0], SNR_RANGE[1])
        self.attack_specs = {}
        for name, spec in self.attacks.items():
            parsed = parse_attack(spec, name)
            if self.snr_budgets and takes_snr(parsed.cls) and not {"eps", "snr"} & set(parsed.params):
                for db in self.snr_budgets:
                    named = f"{name}@{db:g}dB" if len(self.snr_budgets) > 1 else name
                    self.attack_specs[named] = replace(
                        parsed, params={**parsed.params, "snr": float(db)}, text=f"{parsed.text}:snr={db:g}"
                    )
                continue
            sweep = len(self.budgets) > 1 and parsed.cls.grid_eps and "eps" not in parsed.params
            if sweep and parsed.value("eps") is not None:
                for e in self.budgets:
                    self.attack_specs[f"{name}@{e:g}"] = replace(
                        parsed, params={**parsed.params, "eps": e}, text=f"{parsed.text}:eps={e:g}"
                    )
            else:
                self.attack_specs[name] = parsed
        if not self.defenses:
            raise ValueError('the grid needs at least one defense ("none" is the undefended model)')
        for spec in self.defenses:
            parse_defense(spec)
        if len(set(self.defenses)) != len(self.defenses):
            raise ValueError(f"a defense is listed twice in {self.defenses}")
        if self.split not in ("train", "val", "test"):
            raise ValueError(f"split must be train, val or test, got {self.split!r}")
        for spec in self.detectors:
            parse_detector(spec)
        if len(set(self.detectors)) != len(self.detectors):
            raise ValueError(f"a detector is listed twice in {self.detectors}")
        if self.detectors and self.detector_split not in {"train", "val", "test"} - {self.split}:
            raise ValueError(
                f"detector_split must be another split than the grid's {self.split!r} (train, val or test): the "
                f"thresholds are calibrated on clips the detectors are not judged on, got {self.detector_split!r}"
            )
        if not 0 < self.detector_fpr < 1:
            raise ValueError(f"detector_fpr must be within 0-1, got {self.detector_fpr}")
        in_range("detector_steps", self.detector_steps, 1, 10_000)
        for sigma in self.smoothing_sigmas:
            in_range("smoothing sigma", sigma, 1e-6, 1.0)
        for radius in self.smoothing_radii:
            in_range("smoothing radius", radius, 0.0, None)
        in_range("smoothing_n", self.smoothing_n, 1, 1_000_000)
        in_range("smoothing_n0", self.smoothing_n0, 1, 1_000_000)
        if not 0 < self.smoothing_alpha < 1:
            raise ValueError(f"smoothing_alpha must be within 0-1, got {self.smoothing_alpha}")
        for key in ("max_clips", "perceptual_clips", "workers"):
            if getattr(self, key) is not None:
                in_range(key, getattr(self, key), 1, None)
        if self.clip_seconds != 0:
            in_range("clip_seconds", self.clip_seconds, 0.1, 600)
        in_range("batch_size", self.batch_size, 1, 4096)
        in_range("examples", self.examples, 0, 1000)
        if self.classes is not None and (not self.classes or not all(isinstance(c, str) for c in self.classes)):
            raise ValueError(f"classes must be a non-empty list of names, got {self.classes!r}")
        for name in [*self.victims, *self.attacks]:
            if not name.strip() or len(name) > 200:
                raise ValueError(f"bad name {name[:40]!r}: a name is 1-200 characters")

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def defaults() -> dict:
    """Each field's default, for the fields that have one: what a run folder written before a field existed held."""
    return {
        f.name: f.default if f.default is not MISSING else f.default_factory()
        for f in fields(EvalConfig)
        if f.default is not MISSING or f.default_factory is not MISSING
    }


def load_config(path) -> EvalConfig:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such config file")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid TOML: {err}") from None
    except RecursionError:
        raise ValueError(f"{path}: not valid TOML: nested too deeply") from None
    except OSError as err:
        raise ValueError(f"{path}: cannot be read ({err.strerror})") from None
    known = {f.name for f in fields(EvalConfig)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(f"{path}: unknown keys {unknown}; known keys: {sorted(known)}")
    missing = sorted({"data", "victims", "attacks"} - set(raw))
    if missing:
        raise ValueError(f"{path}: lacks the key(s) {missing}")
    try:
        return EvalConfig(**raw)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: {err}") from None
