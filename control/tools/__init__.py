"""The commands around the loop: replay, evaluate (harness.py), top, bench."""
