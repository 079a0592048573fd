"""The tasks studies plan: plain functions of picklable arguments, each returning the rows
of one analysis (see :class:`resdyn.runs.Task`), on the run context's device and in its
precision. A study module declares what to compute and how to judge it; the work lives here.

- :mod:`.spectrum`: singular spectra of units and stages (spectra, stability, stable comparison)
- :mod:`.propagation`: perturbation growth unit by unit (stability, stable comparison)
- :mod:`.eigen`: eigenvalue metrics of square blocks (stiffness, stable comparison)
- :mod:`.perturbation`: distance from the identity per block (identity, depth sweep)
- :mod:`.training`: training a network whose checkpoint travels back to the run folder
  (depth sweep, stable comparison)
- :mod:`.projection`: an FGSM perturbation against a unit's singular vectors (stability)
- :mod:`.altered`: spectra of a unit with its shortcut scaled or its weights interpolated
  (stability)
- :mod:`.boundary`: decision boundaries of a network on 2-D points (stable comparison)
- :mod:`.trajectory`: Euler and reference trajectories of an ODE (the ODE examples)
- :mod:`.dynamics`: Lyapunov exponents, residual alignment and branch spectra across depth
  (dynamics)
"""
