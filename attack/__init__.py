"""A hostile peer on the wire: raw operations against a provider under the model (``sanspi attack``)."""
