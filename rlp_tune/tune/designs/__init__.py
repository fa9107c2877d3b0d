"""The sweep designs, one file each, registered in DESIGNS (designs/base.py says what a design is).

    from rlp_tune.tune.designs import make_design, design_names
    design = make_design(space, root)      # DESIGNS.create(space.design, space, root)
"""
from . import adaptive, grid, study  # noqa: F401  (each registers its designs)
from .base import DESIGNS, FINISHED, Design


def make_design(space, root: str) -> Design:
    return DESIGNS.create(space.design, space, root)


def design_names() -> list[str]:
    return DESIGNS.list()


__all__ = ["DESIGNS", "FINISHED", "Design", "make_design", "design_names"]
