"""s3rec: self-supervised sequential recommendation (S3-Rec, CIKM 2020), exact and fast.

Importing the package is cheap: torch and numpy are imported by the submodules that need them.
"""

__version__ = "0.1.0"
