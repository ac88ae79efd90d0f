"""Placeholder: being written."""


def dfm_euler(*args, **kwargs):
    raise NotImplementedError("dfm_euler is being written")
