"""sanspi: the reference oracle for the Windows Sockets Direct SAN SPI extensions.

The package maps the project's folders: ``sanspi.spec`` (spec/),
``sanspi.model`` (model/), ``sanspi.impl`` (impl/), ``sanspi.lab`` (lab/) and
``sanspi.proof`` (proof/).
"""

__version__ = "0.1.0"
