"""Infrastructure every stage leans on: atomic writes, locks, devices, ranks, threads, memory, errors, progress."""
