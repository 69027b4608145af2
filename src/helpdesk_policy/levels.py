"""Assurance levels, ordered from least to most friction.

``Level`` is a string enum whose members compare by their position in the
ladder, so ``max(levels)`` is the strictest and ``Level.STEP_UP < Level.CALLBACK``.

>>> from helpdesk_policy import Level
>>> Level.STEP_UP < Level.CALLBACK
True
>>> max([Level.SELF_SERVICE, Level.MANAGER_APPROVAL])
<Level.MANAGER_APPROVAL: 'manager_approval'>
>>> Level("deny").allowed
False
"""

from __future__ import annotations

import enum

__all__ = ["Level", "REQUIREMENTS"]


class Level(str, enum.Enum):
    """How much identity assurance the helpdesk needs before acting."""

    SELF_SERVICE = "self_service"
    STEP_UP = "step_up"
    MANAGER_APPROVAL = "manager_approval"
    CALLBACK = "callback"
    DENY = "deny"

    @property
    def rank(self) -> int:
        """Position on the ladder: 0 (``self_service``) to 4 (``deny``)."""
        return _RANK[self]

    @property
    def allowed(self) -> bool:
        """False only for ``deny``: the helpdesk must not act through this channel."""
        return self is not Level.DENY

    @property
    def requirements(self) -> list[str]:
        """What must be satisfied before acting; cumulative up the ladder."""
        return list(REQUIREMENTS[self])

    @classmethod
    def from_rank(cls, rank: int) -> Level:
        return _ORDER[rank]

    def __str__(self) -> str:  # "callback", not "Level.CALLBACK"
        return self.value

    # Level is a str, so without these a comparison with a plain string would
    # fall back to str ordering (alphabetical: "deny" < "self_service"). A
    # string that names a level is compared by rank like the level itself; any
    # other string raises TypeError (returning NotImplemented would let Python
    # retry with str's own, alphabetical, comparison).

    def __lt__(self, other: object) -> bool:
        rank = _other_rank(other)
        return NotImplemented if rank is None else self.rank < rank

    def __le__(self, other: object) -> bool:
        rank = _other_rank(other)
        return NotImplemented if rank is None else self.rank <= rank

    def __gt__(self, other: object) -> bool:
        rank = _other_rank(other)
        return NotImplemented if rank is None else self.rank > rank

    def __ge__(self, other: object) -> bool:
        rank = _other_rank(other)
        return NotImplemented if rank is None else self.rank >= rank

    __hash__ = str.__hash__


def _other_rank(other: object) -> int | None:
    """The rank of ``other`` for an ordering comparison with a Level.

    ``None`` (so the operator returns NotImplemented, then TypeError) for a
    non-string; TypeError at once for a string that names no level.
    """
    if isinstance(other, Level):
        return other.rank
    if isinstance(other, str):
        try:
            return Level(other).rank
        except ValueError:
            raise TypeError("cannot order a Level and a string that names no level") from None
    return None


_ORDER: list[Level] = [
    Level.SELF_SERVICE,
    Level.STEP_UP,
    Level.MANAGER_APPROVAL,
    Level.CALLBACK,
    Level.DENY,
]
# A dict, not _ORDER.index(): a rank is read several times per reason of every decision validated.
_RANK: dict[Level, int] = {level: i for i, level in enumerate(_ORDER)}

#: Requirements per level. Levels are cumulative; ``deny`` has none because
#: nothing the helpdesk could verify makes the request acceptable here.
REQUIREMENTS: dict[Level, tuple[str, ...]] = {
    Level.SELF_SERVICE: (),
    Level.STEP_UP: ("identity_step_up",),
    Level.MANAGER_APPROVAL: ("identity_step_up", "manager_approval"),
    Level.CALLBACK: ("identity_step_up", "manager_approval", "out_of_band_callback"),
    Level.DENY: (),
}
