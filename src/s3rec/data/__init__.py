"""Data layer: file formats and validation, the dataset registry, the CSR store and batch builders."""
