"""Benchmarks (`make bench`): the sensor against a peer (tshark) on the same capture, same run."""
