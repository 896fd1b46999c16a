"""`seawall run`: the daemon (read, observe, score, apply) and its metrics."""
