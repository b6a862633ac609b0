"""Shared test set-up: the ``clause`` marker is declared by sanspi's pytest plugin."""
