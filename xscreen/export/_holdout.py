"""Hold-outs: which films a validation model is trained without, so it can be scored on them.

A spec is ``name=field:pattern[,field:pattern...]``; a film is held out when every pair matches
(``fnmatch``, case-sensitive). Fields: ``source``, ``population``, ``label``, ``group``, ``file``
(the file name). Examples, for ``xscreen train cxr3 nih``:

* ``nih=source:nih-chestxray14``: a hospital the model never saw (adult pneumonia and normals);
* ``kermany-normal2=file:*NORMAL2-*``: Kermany's second series of normals, a proxy for other
  patients of the same children's hospital;
* ``rsna-normals=source:rsna``: adult normals from a source never trained on.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase

from ..runtime._labelled import LabelledImage

FIELDS = ("source", "population", "label", "group", "file")


@dataclass(frozen=True)
class HoldOut:
    name: str
    spec: str
    rules: tuple[tuple[str, str], ...]

    def matches(self, image: LabelledImage) -> bool:
        values = {"source": image.source, "population": image.population, "label": image.label,
                  "group": image.group, "file": image.path.name}
        return all(fnmatchcase(values[field], pattern) for field, pattern in self.rules)


def parse_hold_outs(specs) -> list[HoldOut]:
    """Parse ``name=field:pattern[,...]`` specs; ValueError naming the bad one and the fields."""
    hold_outs = []
    for spec in specs:
        name, sep, body = spec.partition("=")
        rules = tuple(tuple(part.split(":", 1)) for part in body.split(",") if part)
        if not sep or not name or not rules or any(len(r) != 2 or r[0] not in FIELDS for r in rules):
            raise ValueError(
                f"hold-out {spec!r} is not name=field:pattern[,field:pattern]; fields: {', '.join(FIELDS)} "
                "(e.g. nih=source:nih-chestxray14)"
            )
        hold_outs.append(HoldOut(name, body, rules))
    if len({h.name for h in hold_outs}) != len(hold_outs):
        raise ValueError("two hold-outs share a name")
    return hold_outs
