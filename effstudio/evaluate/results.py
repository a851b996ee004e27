"""What an evaluation and a drift check produce: plain dataclasses the CLI prints and the window draws.

`to_json()` gives exactly the keys of the `--json` contract; the other fields (reliability bins, the
most confident mistakes, per-example predictions, the PCA points) are for the window's pictures.
"""

from __future__ import annotations

from dataclasses import dataclass, field


def _number(value: float | None, digits: int = 6) -> float | None:
    """A JSON-friendly float: rounded so outputs are stable across runs, None kept as null."""
    return None if value is None else round(float(value), digits)


@dataclass
class ClassFigures:
    label: str
    precision: float
    recall: float
    f1: float
    support: int

    def to_json(self) -> dict:
        return {"label": self.label, "precision": _number(self.precision), "recall": _number(self.recall),
                "f1": _number(self.f1), "support": self.support}


@dataclass
class LengthBucket:
    """Examples whose length lies in [low, high]; accuracy for classification (token accuracy for
    language modelling, where `loss` is the mean cross-entropy in bits per character)."""

    bucket: str
    low: int
    high: int
    examples: int
    accuracy: float | None
    loss: float | None = None

    def to_json(self) -> dict:
        return {"bucket": self.bucket, "examples": self.examples, "accuracy": _number(self.accuracy)}


@dataclass
class LengthPoint:
    """The model evaluated on inputs `factor` times the training maximum length; `extended` says
    a learned position table had to be grown (by copying) to reach that length."""

    factor: int
    length: int
    accuracy: float | None
    loss: float | None = None
    extended: bool = False

    def to_json(self) -> dict:
        return {"factor": self.factor, "length": self.length, "accuracy": _number(self.accuracy)}


@dataclass
class ReliabilityBin:
    """Predictions whose confidence lies in [low, high): how many, their mean confidence and accuracy."""

    low: float
    high: float
    count: int
    confidence: float
    accuracy: float


@dataclass
class RobustnessPoint:
    perturbation: str
    rate: float
    accuracy: float

    def to_json(self) -> dict:
        return {"perturbation": self.perturbation, "rate": _number(self.rate), "accuracy": _number(self.accuracy)}


@dataclass
class ExampleRow:
    """One evaluated example as the window lists it (index into the evaluated split)."""

    index: int
    text: str
    label: str
    predicted: str
    confidence: float


@dataclass
class Evaluation:
    model: str
    task: str
    split: str
    examples: int
    labels: list[str]
    accuracy: float | None
    macro_f1: float | None
    per_class: list[ClassFigures] = field(default_factory=list)
    confusion: list[list[int]] = field(default_factory=list)  # [true][predicted]
    by_length: list[LengthBucket] = field(default_factory=list)
    length_generalisation: list[LengthPoint] = field(default_factory=list)
    ece: float | None = None
    temperature: float | None = None
    reliability: list[ReliabilityBin] = field(default_factory=list)
    robustness: list[RobustnessPoint] = field(default_factory=list)
    mistakes: list[ExampleRow] = field(default_factory=list)  # most confident mistakes first
    predictions: list[tuple[int, int, float]] = field(default_factory=list)  # (true, predicted, confidence)

    def to_json(self) -> dict:
        return {
            "model": self.model,
            "task": self.task,
            "split": self.split,
            "examples": self.examples,
            "accuracy": _number(self.accuracy),
            "macro_f1": _number(self.macro_f1),
            "per_class": [row.to_json() for row in self.per_class],
            "confusion": [list(row) for row in self.confusion],
            "by_length": [bucket.to_json() for bucket in self.by_length],
            "length_generalisation": [point.to_json() for point in self.length_generalisation],
            "ece": _number(self.ece),
            "temperature": _number(self.temperature),
            "robustness": [point.to_json() for point in self.robustness],
        }


@dataclass
class DriftSignal:
    """One drift signal: its value, the threshold above which it says drift, and that verdict."""

    name: str
    value: float
    threshold: float
    drift: bool

    def to_json(self) -> dict:
        return {"name": self.name, "value": _number(self.value), "threshold": _number(self.threshold),
                "drift": self.drift}


@dataclass
class DriftReport:
    signals: list[DriftSignal]
    mmd: float
    p_value: float
    drift: bool
    reference_xy: list[tuple[float, float]] = field(default_factory=list)  # PCA of pooled representations
    current_xy: list[tuple[float, float]] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"signals": [signal.to_json() for signal in self.signals], "mmd": _number(self.mmd),
                "p_value": _number(self.p_value), "drift": self.drift}
