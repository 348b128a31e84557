"""The four online predictors (kernels A-D), each a pure update/predict pair over a small pytree.

All four predict the next *increment* of a series in units of its volatility (so one set of defaults
fits series of any scale) and return a prediction, a confidence scale and kernel-specific diagnostics:

- A `krr`: kernel ridge regression on the recent window of lagged increments (RBF kernel, solved by
  warm-started conjugate gradients), with a Hölder-exponent estimate of the window's roughness.
- B `density`: a small online-trained network giving a Gaussian predictive density and its entropy.
- C `jump_diffusion`: an Ornstein-Uhlenbeck drift, diffusion and compound-Poisson jumps, stepped with
  explicit or implicit Euler depending on stiffness.
- D `logsig`: robust recursive regression on the log-signature of the recent path.
"""
