"""Curvature of the loss: Hessian-vector products, Lanczos and stochastic Lanczos
quadrature (eigenvalues, spectral density), Hutchinson's trace, and loss surfaces
along one or two directions. Built on :mod:`landscape.measure` (its points and
directions); knows nothing of training runs."""
