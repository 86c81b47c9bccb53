"""s3rec: self-supervised sequential recommendation (S3-Rec, CIKM 2020), exact and fast.

The public API (docs/api.md)::

    import s3rec

    ds = s3rec.load_dataset("LastFM")
    pre = s3rec.pretrain(ds, epochs=150)
    run = s3rec.finetune(ds, init=pre, protocol="sampled")
    print(run.test, s3rec.evaluate(run, protocol="full"))
    rec = s3rec.Recommender.load(run.dir)

Importing the package is cheap: the names above are imported on first use (torch and numpy with them).
"""

__version__ = "0.1.0"

_API = {
    "load_dataset": "s3rec.api",
    "pretrain": "s3rec.api",
    "finetune": "s3rec.api",
    "evaluate": "s3rec.api",
    "register_model": "s3rec.api",
    "Run": "s3rec.api",
    "PretrainResult": "s3rec.api",
    "Dataset": "s3rec.api",
    "Recommender": "s3rec.recommend",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        import importlib

        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value  # once: later lookups do not come here
        return value
    raise AttributeError(f"module 's3rec' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_API))
