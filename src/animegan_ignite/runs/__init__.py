"""A run on disk, and how it stops and goes on.

checkpoints (durable, rotated, read safely), history (``history.jsonl``), resume (exact resume:
what a checkpoint holds beyond the networks), signals (Ctrl-C, SIGTERM), faults (the fault
points that tests and the chaos check stop at). The folder's file names are ``rundir`` above.
"""
