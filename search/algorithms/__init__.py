"""The search algorithms paretune owns (see DESIGN.md for why), free of Ray and of the CLI.

- ``pareto``: dominance, fronts, feasibility at full fidelity, the front's members, hypervolume;
- ``ranking``: non-dominated sorting with crowding for the schedulers;
- ``hypervolume``: the reference point and the recorded hypervolume history;
- ``fidelity``, ``samplers``, ``conditioned_floats``: the fidelity-aware asker and its samplers;
- ``schedulers``: multi-objective successive halving and Hyperband.
"""
