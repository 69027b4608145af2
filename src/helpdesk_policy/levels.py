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
        return _ORDER.index(self)

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


    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Level):
            return NotImplemented
        return self.rank < other.rank

    def __le__(self, other: object) -> bool:
        if not isinstance(other, Level):
            return NotImplemented
        return self.rank <= other.rank

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, Level):
            return NotImplemented
        return self.rank > other.rank

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, Level):
            return NotImplemented
        return self.rank >= other.rank

    __hash__ = str.__hash__


_ORDER: list[Level] = [
    Level.SELF_SERVICE,
    Level.STEP_UP,
    Level.MANAGER_APPROVAL,
    Level.CALLBACK,
    Level.DENY,
]

#: Requirements per level. Levels are cumulative; ``deny`` has none because
#: nothing the helpdesk could verify makes the request acceptable here.
REQUIREMENTS: dict[Level, tuple[str, ...]] = {
    Level.SELF_SERVICE: (),
    Level.STEP_UP: ("identity_step_up",),
    Level.MANAGER_APPROVAL: ("identity_step_up", "manager_approval"),
    Level.CALLBACK: ("identity_step_up", "manager_approval", "out_of_band_callback"),
    Level.DENY: (),
}
