"""Batch scoring: ``visiongate score SOURCE --task ... --out DEST``.

One record per image under SOURCE, written in atomically committed chunks so a run can be killed
at any moment and resumed with every image scored exactly once. Modules, each with one job:

- ``sources``: which files are images, and reading them with size and content checks
- ``shard``:   the stable split of the work list across the pods of an Indexed Job
- ``ledger``:  what earlier runs already committed in DEST, and the per-shard lock
- ``writers``: atomic chunk files (JSON Lines, Parquet) and super-resolution images
- ``retry``:   capped exponential backoff with jitter for transient remote failures
- ``engines``: where inference runs (in-process, a gateway over HTTP, Triton)
- ``scoring``: one path -> one record, the same for every engine
- ``runner``:  the pipelined loop that scores, commits chunks and reports progress
- ``ray_engine``: the same scoring as a Ray Data ``map_batches`` job
- ``cli``:     the argparse face, the only place that reads the Kubernetes env vars
"""
