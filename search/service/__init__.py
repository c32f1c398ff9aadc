"""Running a study: its life cycle, its driver on Ray, the search core and its Ray adapters.

- ``lifecycle``: ``submit``, ``resume``, ``request_stop``, ``delete``, ``storage_url``,
  ``model_dims``, ``open_context``;
- ``driver``: ``run_study`` (one driver per study, Ray Tune underneath); ``cluster``: Ray Jobs
  on a cluster; ``trainable``: the trial function Ray runs;
- ``searcher``: ``SearchCore`` (Optuna proposes, the store records, every trial ends in the right
  state), with ``budget``, ``context`` (``StudyContext``), ``trial_results``, ``requeue``
  (retries, orphan recovery), ``deepening`` (``resume --max-steps``), ``shared_results``,
  ``ask_lock``, ``progress`` (the status line) and ``consoles`` (where it is printed);
- ``ray_searcher`` and ``recovery``: the Ray Tune ``Searcher``, callbacks and node-loss retries.
"""
