"""Placeholder: being written."""


def euler(*args, **kwargs):
    raise NotImplementedError("euler is being written")


def predictor_corrector(*args, **kwargs):
    raise NotImplementedError("predictor_corrector is being written")


def tau_leaping(*args, **kwargs):
    raise NotImplementedError("tau_leaping is being written")


def theta_rk2(*args, **kwargs):
    raise NotImplementedError("theta_rk2 is being written")


def theta_trapezoidal(*args, **kwargs):
    raise NotImplementedError("theta_trapezoidal is being written")


def tweedie(*args, **kwargs):
    raise NotImplementedError("tweedie is being written")
