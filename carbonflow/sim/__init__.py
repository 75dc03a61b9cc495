"""Grid models and their import: MATPOWER case files and solved pandapower networks become snapshots.

The engine never sees these formats; importers here turn a user's grid into the C1 snapshot document
and hand it to :func:`carbonflow.engine.snapshot.snapshot_from_dict`, so imported grids pass the same
validation as hand-written JSON.
"""
