"""Detection, pure: counters in (observe.py), decisions out (engine.py).
No I/O, no kernel: `seawall evaluate` and the unit tests run it as is."""
