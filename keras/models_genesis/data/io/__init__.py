"""File formats and geometry: volumes, intensities, DICOM series, LIDC-IDRI XML, CSV tables, cube
and crop files. Imports nothing else of the package's data."""
