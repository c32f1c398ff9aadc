"""The ``paretune`` command (:func:`paretune.search.cli.app.main`).

- ``app``: the Typer application and ``main``;
- ``spec``: ``validate``, ``trial``; ``study``: ``submit``, ``resume``, ``status``, ``pareto``,
  ``studies``, ``stop``, ``logs``, ``delete``; ``export``: ``export``; ``dashboard``:
  ``dashboard``;
- ``report``: the rows and tables ``status``, ``studies`` and ``pareto`` print.
"""
