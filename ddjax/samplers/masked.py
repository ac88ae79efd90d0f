"""Placeholder: being written."""


def confidence(*args, **kwargs):
    raise NotImplementedError("confidence is being written")


def first_hitting(*args, **kwargs):
    raise NotImplementedError("first_hitting is being written")


def remdm(*args, **kwargs):
    raise NotImplementedError("remdm is being written")
