"""Choosing generators (paper §3.2): candidates, FCN score, sharpness, realism classifier, selection rule.

`selection` receives the judge and the generator loader as arguments; it never loads models itself.
"""
