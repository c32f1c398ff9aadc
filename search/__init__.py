"""paretune search: the CLI, the service that runs studies on Ray, the search algorithms, the store.

Sub-packages, each layer importing only those below it (and ``paretune.spaces``,
``paretune.trainers`` where a trial is built):

- :mod:`paretune.search.cli`: the ``paretune`` command and what it prints;
- :mod:`paretune.search.service`: a study's life cycle, its driver, the search core and its Ray
  Tune adapters;
- :mod:`paretune.search.algorithms`: the front rule, ranking, hypervolume, the fidelity-aware
  samplers and the multi-objective schedulers (no Ray, no database, except the hypervolume
  recorder's writes);
- :mod:`paretune.search.store`: the study store, its read API and the storage URLs.
"""
