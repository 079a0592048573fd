"""Studies: one module per study, turning tasks into tidy rows."""

from .spectra import read_spectra, spectra_table, spectrum_row, spectrum_task, write_spectra

__all__ = ["read_spectra", "spectra_table", "spectrum_row", "spectrum_task",
           "write_spectra"]
