"""sanspi bench: performance figures, each a ratio measured within one run."""
