"""Cell parameter sets: data with provenance, loaded by name or from a user's own file."""

from openbms.chemistry.cells import (
    CHEMISTRIES,
    CellParams,
    ChemistryError,
    OcvTable,
    load_chemistry,
    load_user_cell,
)

__all__ = [
    "CHEMISTRIES",
    "CellParams",
    "ChemistryError",
    "OcvTable",
    "load_chemistry",
    "load_user_cell",
]
