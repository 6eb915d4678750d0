"""Class schemes: one object owns class names, colours, hierarchy and the GGS flag.

Writers, reports and training read a :class:`ClassScheme`; nobody hard-codes a class name.
A model's metadata carries its scheme as a dict (``ClassScheme.to_dict``), so the scheme of a
bundled or user-trained model is always read from the model file.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class GlomClass:
    """One class: its name, RGB colour, and where it sits in the hierarchy."""

    name: str
    color: tuple[int, int, int]
    is_glomerulus: bool = True
    is_ggs: bool = False  # globally sclerosed (counts in the global sclerosis percentage)
    parent: str | None = None  # e.g. "sclerosed" for the three GGS subtypes
    description: str = ""


@dataclass(frozen=True)
class ClassScheme:
    """An ordered list of classes; the order is the model's output order."""

    name: str
    classes: tuple[GlomClass, ...]
    description: str = ""
    _index: dict[str, int] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        names = [c.name for c in self.classes]
        if len(set(names)) != len(names):
            raise ValueError(f"class scheme {self.name!r} repeats a class name: {names}")
        object.__setattr__(self, "_index", {n: i for i, n in enumerate(names)})

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.classes]

    def __len__(self) -> int:
        return len(self.classes)

    def index(self, name: str) -> int:
        try:
            return self._index[name]
        except KeyError:
            raise KeyError(
                f"class {name!r} is not in scheme {self.name!r} ({', '.join(self.names)})"
            ) from None

    def get(self, name: str) -> GlomClass:
        return self.classes[self.index(name)]

    @property
    def ggs_indices(self) -> list[int]:
        return [i for i, c in enumerate(self.classes) if c.is_ggs]

    @property
    def glomerulus_indices(self) -> list[int]:
        return [i for i, c in enumerate(self.classes) if c.is_glomerulus]

    def ggs_probability(self, probs):
        """P(globally sclerosed) = sum of the GGS classes' probabilities, per row."""
        import numpy as np

        p = np.asarray(probs, dtype=np.float64)
        return p[..., self.ggs_indices].sum(axis=-1)

    def glomerulus_probability(self, probs):
        import numpy as np

        p = np.asarray(probs, dtype=np.float64)
        return p[..., self.glomerulus_indices].sum(axis=-1)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "description": self.description,
            "classes": [
                {
                    "name": c.name,
                    "color": list(c.color),
                    "is_glomerulus": c.is_glomerulus,
                    "is_ggs": c.is_ggs,
                    "parent": c.parent,
                    "description": c.description,
                }
                for c in self.classes
            ],
        }

    @classmethod
    def from_dict(cls, d: dict) -> ClassScheme:
        return cls(
            name=d["name"],
            description=d.get("description", ""),
            classes=tuple(
                GlomClass(
                    name=c["name"],
                    color=tuple(int(v) for v in c["color"]),  # type: ignore[arg-type]
                    is_glomerulus=bool(c.get("is_glomerulus", True)),
                    is_ggs=bool(c.get("is_ggs", False)),
                    parent=c.get("parent"),
                    description=c.get("description", ""),
                )
                for c in d["classes"]
            ),
        )


NORMAL = GlomClass("normal", (46, 160, 67), description="glomerulus without global sclerosis")
NON_GLOMERULAR = GlomClass(
    "non_glomerular", (128, 128, 128), is_glomerulus=False, description="detector false positive"
)

FIVE_CLASS = ClassScheme(
    name="glo_in_one_5",
    description="Glo-In-One's five classes: normal, the three GGS subtypes, non-glomerular.",
    classes=(
        NORMAL,
        GlomClass(
            "obsolescent",
            (214, 39, 40),
            is_ggs=True,
            parent="sclerosed",
            description="retracted, wrinkled tuft; Bowman's space filled with collagen",
        ),
        GlomClass(
            "solidified",
            (148, 103, 189),
            is_ggs=True,
            parent="sclerosed",
            description="consolidated, solid tuft filling Bowman's capsule",
        ),
        GlomClass(
            "disappearing",
            (255, 127, 14),
            is_ggs=True,
            parent="sclerosed",
            description="faint remnant merging into the interstitium",
        ),
        NON_GLOMERULAR,
    ),
)

COARSE = ClassScheme(
    name="coarse_3",
    description="normal vs globally sclerosed (subtype not resolved) vs non-glomerular.",
    classes=(
        NORMAL,
        GlomClass("sclerosed", (214, 39, 40), is_ggs=True, description="globally sclerosed glomerulus"),
        NON_GLOMERULAR,
    ),
)

GS_BINARY = ClassScheme(
    name="gs_binary",
    description="bueno_pas labels: nonGS vs GS.",
    classes=(
        GlomClass("nonGS", (46, 160, 67), description="not globally sclerosed"),
        GlomClass("GS", (214, 39, 40), is_ggs=True, description="globally sclerosed"),
    ),
)

SCHEMES: dict[str, ClassScheme] = {s.name: s for s in (FIVE_CLASS, COARSE, GS_BINARY)}


def get_scheme(name: str) -> ClassScheme:
    try:
        return SCHEMES[name]
    except KeyError:
        raise KeyError(f"unknown class scheme {name!r}; known: {', '.join(SCHEMES)}") from None
